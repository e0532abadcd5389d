#!/usr/bin/env bash
# Create .venv (once) and install translate with its test and ONNX extras. Used by demo.sh, test.sh and .ci/run.
# TORCH_SPEC overrides the PyTorch pins (e.g. TORCH_SPEC="torch torchvision" on a machine with other wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC2086
.venv/bin/python -m pip install --quiet --disable-pip-version-check ${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
