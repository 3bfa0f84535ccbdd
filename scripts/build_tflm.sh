#!/usr/bin/env bash
# Build and cache the TFLite Micro static library for one Cortex-M core and kernel set, from the
# pinned archives in ../shared/third_party (or --sources DIR / EDGECONV_TFLM_SOURCES), into
# ${EDGECONV_TFLM_CACHE:-~/.cache/edgeconv/tflm}/<cpu>-<kernels>. A rerun with the same sources
# and compiler does nothing. Needs gcc-arm-none-eabi, libnewlib-arm-none-eabi,
# libstdc++-arm-none-eabi-newlib, make, patch, and Pillow in the Python that runs this.
#   scripts/build_tflm.sh [--cpu cortex-m4] [--kernels cmsis_nn|reference] [--sources DIR] [--jobs N]
set -euo pipefail
cd "$(dirname "$0")/.."
py=python3
if [ -x .venv/bin/python ]; then py=.venv/bin/python; fi
exec "$py" -m edgeconv.firmware.library "$@"
