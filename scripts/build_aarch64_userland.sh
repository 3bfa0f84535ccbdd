#!/usr/bin/env bash
# Build an aarch64 userland that runs an edgeconv bundle under qemu-aarch64-static.
#
#   scripts/build_aarch64_userland.sh [ROOT]
#
# ROOT (default: $EDGECONV_AARCH64_ROOT, else ~/.cache/edgeconv/aarch64) receives:
#   - Debian arm64 packages of Python 3.11 and the libraries it loads, fetched with
#     `apt-get download` and unpacked with `dpkg -x` (nothing is installed, no chroot, no
#     binfmt registration: qemu-aarch64-static -L ROOT maps ROOT over /);
#   - aarch64 wheels of ai-edge-litert and numpy (and their dependencies), fetched with
#     pip's --platform options and unpacked into ROOT/usr/lib/python3/dist-packages, which
#     Debian's python3.11 has on sys.path.
# Root is needed only for `dpkg --add-architecture arm64` and `apt-get update` (sudo is used
# when not root). Idempotent: a stamp file records what was built; a rerun with the same
# package list and pins only re-checks that the interpreter imports numpy and ai_edge_litert.
#
# Environment:
#   EDGECONV_AARCH64_ROOT   the folder (when no argument is given)
#   LITERT_VERSION          ai-edge-litert pin (default 2.3.0, the version the project measured)
#   NUMPY_SPEC              numpy requirement (default "numpy>=2,<3")
#   PIP                     pip command used to download wheels (default: python3 -m pip)
#   QEMU                    qemu binary (default: qemu-aarch64-static)
# Check afterwards:
#   qemu-aarch64-static -L ROOT ROOT/usr/bin/python3.11 -c "import numpy, ai_edge_litert"
set -euo pipefail

ROOT="${1:-${EDGECONV_AARCH64_ROOT:-$HOME/.cache/edgeconv/aarch64}}"
LITERT_VERSION="${LITERT_VERSION:-2.3.0}"
NUMPY_SPEC="${NUMPY_SPEC:-numpy>=2,<3}"
PIP="${PIP:-python3 -m pip}"
QEMU="${QEMU:-qemu-aarch64-static}"
PYVER=3.11
SITE="usr/lib/python3/dist-packages"

# Python 3.11 from Debian 12 and every shared library its interpreter, its stdlib extension
# modules, numpy's and LiteRT's native code load.
PACKAGES=(
  python3.11-minimal libpython3.11-minimal libpython3.11-stdlib
  libc6 libgcc-s1 libstdc++6 zlib1g libexpat1 libffi8 libssl3 libbz2-1.0 liblzma5 libzstd1
  libsqlite3-0 libncursesw6 libtinfo6 libreadline8 libuuid1 libdb5.3 libcrypt1
  libnsl2 libtirpc3 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libcom-err2 libkrb5support0
  libkeyutils1
)
# every manylinux tag up to Debian 12's glibc 2.36 (wheels pick one of them: LiteRT 2.3.0 is 2_27)
PLATFORMS=(manylinux2014_aarch64)
for minor in $(seq 17 36); do PLATFORMS+=("manylinux_2_${minor}_aarch64"); done
STAMP="$ROOT/.edgeconv-userland"
WANT_STAMP="packages=${PACKAGES[*]}; ai-edge-litert==$LITERT_VERSION; $NUMPY_SPEC; python$PYVER; proc/cpuinfo=cortex-a72"

say() { printf 'build_aarch64_userland: %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

command -v "$QEMU" >/dev/null || {
  say "error: $QEMU not found; install it with: apt-get install qemu-user-static"; exit 2; }

check() {
  "$QEMU" -cpu cortex-a72 -L "$ROOT" "$ROOT/usr/bin/python$PYVER" -c \
    "import platform, numpy, ai_edge_litert, ai_edge_litert.interpreter; print(platform.machine(), 'python', platform.python_version(), 'numpy', numpy.__version__)"
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT_STAMP" ]; then
  say "$ROOT already built ($WANT_STAMP); checking it"
  check
  exit 0
fi

start=$(date +%s)
say "building the aarch64 userland in $ROOT"
rm -rf "$ROOT"
mkdir -p "$ROOT"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  say "dpkg --add-architecture arm64"
  as_root dpkg --add-architecture arm64
fi
say "apt-get update"
as_root apt-get update -qq

say "apt-get download (arm64): ${PACKAGES[*]}"
mkdir -p "$work/debs"
(cd "$work/debs" && apt-get download -qq "${PACKAGES[@]/%/:arm64}")
for deb in "$work"/debs/*.deb; do
  say "dpkg -x $(basename "$deb")"
  dpkg -x "$deb" "$ROOT"
done
# Debian keeps the dynamic loader under /usr/lib on merged-/usr systems; the packages ship
# the /lib -> usr/lib links only in base-files, which is not unpacked here.
for d in lib bin sbin; do
  if [ ! -e "$ROOT/$d" ]; then ln -s "usr/$d" "$ROOT/$d"; fi
done

say "pip download --only-binary=:all: --platform manylinux_2_{17..36}_aarch64 --python-version $PYVER ai-edge-litert==$LITERT_VERSION $NUMPY_SPEC"
platform_args=()
for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
$PIP download --quiet --disable-pip-version-check --only-binary=:all: "${platform_args[@]}" \
  --python-version "$PYVER" --implementation cp --abi "cp${PYVER/./}" --abi abi3 --abi none \
  --dest "$work/wheels" "ai-edge-litert==$LITERT_VERSION" "$NUMPY_SPEC"
mkdir -p "$ROOT/$SITE"
for whl in "$work"/wheels/*.whl; do
  say "unpack $(basename "$whl") into /$SITE"
  python3 -m zipfile -e "$whl" "$ROOT/$SITE"
done

# LiteRT initializes the cpuinfo library when an Interpreter is created (any op resolver). Under
# qemu-user it reads the host's x86 /proc/cpuinfo, finds no ARM cores and dereferences NULL
# (SIGSEGV in CreateWrapperFromFile, measured with qemu 7.2 / LiteRT 2.3.0). qemu's -L prefix
# is also searched for /proc paths, so an aarch64 /proc/cpuinfo in ROOT (Cortex-A72 cores, one
# per host CPU; run qemu with -cpu cortex-a72 to match) is what the guest reads instead.
say "write /proc/cpuinfo (aarch64, Cortex-A72 x $(nproc --all)) into $ROOT for LiteRT's cpuinfo"
mkdir -p "$ROOT/proc"
: > "$ROOT/proc/cpuinfo"
for i in $(seq 0 $(( $(nproc --all) - 1 ))); do
  printf 'processor\t: %d\nBogoMIPS\t: 100.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$i" >> "$ROOT/proc/cpuinfo"
done

say "check: $QEMU -L $ROOT $ROOT/usr/bin/python$PYVER -c 'import numpy, ai_edge_litert'"
check
printf '%s' "$WANT_STAMP" > "$STAMP"
say "done in $(( $(date +%s) - start )) s; $(du -sh "$ROOT" | cut -f1) in $ROOT"
