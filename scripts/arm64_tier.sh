#!/bin/bash
# arm64 tier: the handheld runtime's tests in a Debian bookworm arm64 userland under qemu-user (Pi 4 CPU),
# and the INT8 inference on fixed windows compared bit for bit with this (x86) host in the same run.
#
#   sudo scripts/arm64_tier.sh            # needs root (debootstrap, chroot, mounts); see docs/pi.md
#
# The userland is built once and cached (ROOTFS, ~400 MB, ~4 min); later runs reuse it and its venv.
# Traps (docs/pi.md): qemu-user shows the host's x86 /proc/cpuinfo (onnxruntime/LiteRT then crash), so an
# ARM-style cpuinfo is bind-mounted; and QEMU's default CPU model breaks XNNPACK's INT8 path, so
# QEMU_CPU=cortex-a72 is set for every arm64 process.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOTFS=${ECGEDGE_ARM64_ROOTFS:-/var/cache/ecgedge/arm64-rootfs}
MIRROR=${ECGEDGE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
HOST_PY=${HOST_PY:-$REPO/.venv/bin/python}
export QEMU_CPU=cortex-a72
# tests that need only the runtime install (numpy/scipy/LiteRT/ORT/aiohttp/...), no torch or tensorflow
TESTS=${ECGEDGE_ARM64_TESTS:-"tests/test_handheld_arm64.py tests/test_handheld_config.py tests/test_protocol_codec.py
 tests/test_package_signing.py tests/test_runtime_imports.py tests/test_runtime_transports.py tests/test_sim_device.py"}
t0=$(date +%s)
log() { echo "[arm64 $(( $(date +%s) - t0 ))s] $*"; }

[ "$(id -u)" = 0 ] || { echo "error: arm64_tier.sh needs root (chroot, mounts)" >&2; exit 2; }

# -- qemu-user + binfmt ------------------------------------------------------------------------------
if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then
  log "installing qemu-user-static binfmt-support debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static binfmt-support debootstrap >/dev/null
fi
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64

# -- the userland (cached) -------------------------------------------------------------------------------
if [ ! -x "$ROOTFS/usr/bin/python3" ]; then
  log "debootstrap bookworm arm64 into $ROOTFS (once; ~4 min)"
  rm -rf "$ROOTFS.partial"
  mkdir -p "$(dirname "$ROOTFS")"
  debootstrap --arch=arm64 --include=python3,python3-venv,python3-pip,ca-certificates bookworm \
    "$ROOTFS.partial" "$MIRROR" >/tmp/ecgedge-debootstrap.log 2>&1 || { tail -n 5 /tmp/ecgedge-debootstrap.log; exit 1; }
  mv "$ROOTFS.partial" "$ROOTFS"
fi

# -- mounts (undone on exit) --------------------------------------------------------------------------------
MOUNTS=()
cleanup() {
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
bind() { mkdir -p "$2"; mount "${@:3}" "$1" "$2"; MOUNTS+=("$2"); }
bind proc "$ROOTFS/proc" -t proc
bind sysfs "$ROOTFS/sys" -t sysfs
bind /dev "$ROOTFS/dev" --bind
bind /dev/pts "$ROOTFS/dev/pts" --bind
CPUINFO=$ROOTFS/etc/ecgedge-cpuinfo
: >"$CPUINFO"
for n in 0 1 2 3; do  # what a Raspberry Pi 4 (4x Cortex-A72) reports
  printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$n" >>"$CPUINFO"
done
mount --bind "$CPUINFO" "$ROOTFS/proc/cpuinfo"; MOUNTS+=("$ROOTFS/proc/cpuinfo")
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then  # e.g. a proxy's CA
  mkdir -p "$ROOTFS/usr/local/share/ca-certificates"
  if ! diff -rq /usr/local/share/ca-certificates "$ROOTFS/usr/local/share/ca-certificates" >/dev/null 2>&1; then
    cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
    log "update-ca-certificates (emulated: slow, only when the host's extra CAs change)"
    chroot "$ROOTFS" /usr/sbin/update-ca-certificates >/dev/null 2>&1
  fi
fi
in_arm() {  # a clean environment inside the userland
  chroot "$ROOTFS" /usr/bin/env -i PATH=/opt/venv/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
    QEMU_CPU="$QEMU_CPU" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CERT=/etc/ssl/certs/ca-certificates.crt "$@"
}
[ "$(in_arm uname -m)" = aarch64 ] || { echo "error: the userland does not run as aarch64" >&2; exit 1; }

# -- host side: wheel, fixed windows and the x86 reference ---------------------------------------------------
STAGE=$ROOTFS/opt/stage
rm -rf "$STAGE"; mkdir -p "$STAGE/wheels"
log "building the ecgedge wheel and the x86 INT8 reference"
(cd "$REPO" && "$HOST_PY" -m pip wheel -q --no-deps --no-build-isolation -w "$STAGE/wheels" . >"$STAGE/wheel.log" 2>&1) \
  || { tail -n 20 "$STAGE/wheel.log"; exit 1; }
# the test package (tiny full-INT8 model; tensorflow builds it here, never on arm64) and the reference outputs
"$HOST_PY" "$REPO/tests/handheld_golden.py" --stage "$STAGE" ${ECGEDGE_ARM64_PACKAGE:+--package "$ECGEDGE_ARM64_PACKAGE"} 2>&1 \
  | grep -v "XNNPACK delegate"
mkdir -p "$STAGE/repo"
cp -r "$REPO/tests" "$STAGE/repo/"
cp -r "$REPO/pyproject.toml" "$REPO/deploy" "$STAGE/repo/"
find "$STAGE/repo" -name __pycache__ -prune -exec rm -rf {} +

# -- arm64 side: the runtime install from the wheel, then the tests --------------------------------------------
if [ ! -x "$ROOTFS/opt/venv/bin/pytest" ]; then
  log "creating the arm64 venv"
  in_arm /usr/bin/python3 -m venv /opt/venv
fi
WHEEL=$(cd "$STAGE/wheels" && ls ecgedge-*.whl)
log "pip install ecgedge[runtime] from $WHEEL (arm64)"
in_arm pip install -q --force-reinstall --no-deps "/opt/stage/wheels/$WHEEL"
in_arm pip install -q --only-binary=:all: "/opt/stage/wheels/$WHEEL[runtime]" pytest hypothesis pytest-timeout
heavy=$(in_arm pip list 2>/dev/null | grep -iE '^(torch|tensorflow|tensorflow-cpu|keras|tf-keras) ' || true)
[ -z "$heavy" ] || { echo "error: the runtime install pulled heavy packages: $heavy" >&2; exit 1; }
log "pytest on arm64 (QEMU_CPU=$QEMU_CPU): $(echo $TESTS | wc -w) files"
set +e
in_arm /usr/bin/env ECGEDGE_TEST_PACKAGE=/opt/stage/package ECGEDGE_INT8_REFERENCE=/opt/stage/x86_int8.json \
  sh -c "cd /opt/stage/repo && python -m pytest -q -m 'not backend' -p no:cacheprovider --timeout 900 $(echo $TESTS)"
rc=$?
set -e
log "arm64 tier done: pytest exit $rc, wall $(( $(date +%s) - t0 )) s"
exit $rc
