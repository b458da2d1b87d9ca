#!/usr/bin/env bash
# Set up (once) the virtual environment with polytask and what its benchmarks and tests
# need. Sourced by main.sh and test.sh; running it again redoes nothing that is done.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${POLYTASK_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
TORCH_PIN="${POLYTASK_TORCH:-torch==2.13.0}"   # the CPU build on this machine's local disk
# the extras whose tests and benchmarks run here (RDKit, PyTorch Geometric, pymoo, cvxpy,
# Lightning);
# torch is installed first, so none of them pulls another torch build
EXTRAS="${POLYTASK_EXTRAS:-bench,test,chem,graph,pareto,linear,linear-ref,lightning}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.polytask-setup"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup.sh" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "setup: installing $TORCH_PIN and polytask[$EXTRAS]" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$TORCH_PIN"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[$EXTRAS]"
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
