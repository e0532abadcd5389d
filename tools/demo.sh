#!/usr/bin/env bash
# Set everything up and run the main job: train small Pix2Pix and CycleGAN models on the built-in datasets,
# convert held-out images with each, and print where everything is.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
.venv/bin/python tools/demo.py "$@"
