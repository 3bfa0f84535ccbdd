#!/usr/bin/env bash
# System set-up for the bundle and fleet tests (tests/test_bundle.py, tests/test_fleet.py, whose
# labgrid comes from the `fleet` extra in `all`): an OpenSSH server binary for the
# ssh:// round trip on 127.0.0.1 (the test starts its own sshd; none is left running), qemu-user
# for the qemu-aarch64 round trip, chromium for the report.html browser test
# (tests/test_report_html.py), and the aarch64 userland (cached in
# ${EDGECONV_AARCH64_ROOT:-~/.cache/edgeconv/aarch64}; a rerun only re-checks it).
# Needs root or sudo for apt-get / dpkg --add-architecture.
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  openssh-server openssh-client qemu-user-static chromium
scripts/build_aarch64_userland.sh
