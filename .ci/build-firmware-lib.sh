#!/usr/bin/env bash
# CI: the Cortex-M toolchain, QEMU for Cortex-M boards, and the cached TFLite Micro library the
# firmware tests link against (tests/test_firmware.py never builds it). The library build takes
# ~10-13 min on 2 cores the first time; a rerun with the same pinned sources is a no-op. Cache
# folder: ${EDGECONV_TFLM_CACHE:-~/.cache/edgeconv/tflm}. Run inside the venv (Pillow is needed by
# TFLM's Makefile). Debian 12's qemu-arm 7.2 cannot run M-profile programs; qemu-system-arm's
# mps2-an386 (Cortex-M4) / mps2-an500 (Cortex-M7) boards are used instead.
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm make patch xxd
scripts/build_tflm.sh --cpu cortex-m4 --kernels cmsis_nn
# the reference-kernel library (scripts/firmware_probes.py, options.kernels = "reference") is
# not used by the tests; build it when asked (another ~12 min)
if [ "${EDGECONV_CI_TFLM_REFERENCE:-0}" = 1 ]; then
  scripts/build_tflm.sh --cpu cortex-m4 --kernels reference
fi
