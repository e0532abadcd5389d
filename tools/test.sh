#!/usr/bin/env bash
# Set everything up and run the whole test suite (what .ci/run calls). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
.venv/bin/python -m ruff check translate tools tests
.venv/bin/python -m pytest -q "$@"
