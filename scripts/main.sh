#!/usr/bin/env bash
# The main job: a real multi-task benchmark (UCI Census-Income, MMoE task group 1) with
# several balancing methods; prints per-task test AUC and Δm per method.
# Extra arguments go to `polytask bench` (e.g. --seeds 3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
polytask data get census-income
# equal weighting, loss weightings and gradient aggregations (any of `polytask list methods`)
METHODS="${POLYTASK_MAIN_METHODS:-ew,uw,dwa,rlw,famo,gradnorm,mgda,pcgrad,cagrad,nash-mtl,upgrad,aligned-mtl}"
exec polytask bench census-income --methods "$METHODS" --seeds 1 --epochs 2 \
  --out runs/main --no-progress "$@"
