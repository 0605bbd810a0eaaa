#!/usr/bin/env bash
# Install everything (system packages where root, .venv) and run the test suite.
# Extra arguments go to pytest, e.g. `bash scripts/run-tests.sh -k store`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
