#!/usr/bin/env bash
# Set up (once) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
ruff check src tests scripts
exec python -m pytest "$@"
