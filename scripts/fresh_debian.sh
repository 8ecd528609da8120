#!/bin/bash
# The README's promise, checked: on a fresh Debian 12 (bookworm) amd64 root, `bash scripts/setup.sh` then
# `make demo` work. Builds the root with debootstrap (as scripts/arm64_tier.sh does for arm64), copies this
# checkout's committed tree into it (git archive HEAD), runs both in a chroot with a clean environment, and
# prints the time and disk each step took. A one-off verification (heavy: ~1-2 GB downloads, 20-60 min on
# 2 cores), not part of CI; results are written down in docs/first_ten_minutes.md.
#
#   sudo scripts/fresh_debian.sh                 # needs root (debootstrap, chroot, mounts)
#
# ROOT (default /var/tmp/ecgedge-fresh-bookworm) is made anew each run; KEEP=1 keeps it afterwards.
# ECGEDGE_DEBIAN_MIRROR picks the mirror. ECGEDGE_TORCH_INDEX is passed to setup.sh; WHEELHOUSE=DIR is
# bind-mounted and given to pip as PIP_FIND_LINKS (for machines that cannot reach download.pytorch.org).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${ROOT:-/var/tmp/ecgedge-fresh-bookworm}
MIRROR=${ECGEDGE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
t0=$(date +%s)
log() { echo "[fresh $(( $(date +%s) - t0 ))s] $*"; }
[ "$(id -u)" = 0 ] || { echo "error: fresh_debian.sh needs root (debootstrap, chroot, mounts)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "error: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 2; }

MOUNTS=()
cleanup() {
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[i]}" 2>/dev/null || true; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$ROOT"
}
trap cleanup EXIT
rm -rf "$ROOT"
mkdir -p "$ROOT"

log "debootstrap bookworm amd64 (minbase: no python, no compiler) from $MIRROR"
s=$(date +%s)
debootstrap --arch=amd64 --variant=minbase bookworm "$ROOT" "$MIRROR" >/tmp/ecgedge-fresh-debootstrap.log 2>&1 \
  || { tail -n 5 /tmp/ecgedge-fresh-debootstrap.log; exit 1; }
echo "deb $MIRROR bookworm main" >"$ROOT/etc/apt/sources.list"
base_mb=$(du -sm --exclude=proc --exclude=sys --exclude=dev "$ROOT" | cut -f1)
log "base root: ${base_mb} MB in $(( $(date +%s) - s )) s"

bind() { mkdir -p "$2"; mount "${@:3}" "$1" "$2"; MOUNTS+=("$2"); }
bind proc "$ROOT/proc" -t proc
bind sysfs "$ROOT/sys" -t sysfs
bind /dev "$ROOT/dev" --bind
bind /dev/pts "$ROOT/dev/pts" --bind
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then  # e.g. a proxy's CA, once ca-certificates is in
  mkdir -p "$ROOT/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
fi
ENVV=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb)
# behind a TLS-inspecting proxy pip must trust the system store (which then holds the proxy's CA)
compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null && ENVV+=(PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
if [ -n "${WHEELHOUSE:-}" ]; then
  bind "$WHEELHOUSE" "$ROOT/opt/wheelhouse" --bind -o ro
  ENVV+=(PIP_FIND_LINKS=/opt/wheelhouse)
fi
[ -n "${ECGEDGE_TORCH_INDEX+x}" ] && ENVV+=("ECGEDGE_TORCH_INDEX=$ECGEDGE_TORCH_INDEX")
in_root() { chroot "$ROOT" /usr/bin/env -i "${ENVV[@]}" "$@"; }

mkdir -p "$ROOT/root/ecgedge"
(cd "$REPO" && git archive HEAD) | tar -x -C "$ROOT/root/ecgedge"
log "checkout: $(cd "$REPO" && git rev-parse --short HEAD) copied to /root/ecgedge"

# A fresh machine has no make; the README's first line says how to get it. setup.sh needs bash only.
s=$(date +%s)
set +e
in_root bash -c 'cd /root/ecgedge && bash scripts/setup.sh' 2>&1 | tee /tmp/ecgedge-fresh-setup.log | tail -n 20
rc=${PIPESTATUS[0]}
set -e
setup_s=$(( $(date +%s) - s ))
[ "$rc" = 0 ] || { log "setup.sh failed (exit $rc) after $setup_s s"; exit 1; }
# CA certificates copied above only take effect once ca-certificates is installed (by setup.sh)
after_mb=$(du -sm --exclude=proc --exclude=sys --exclude=dev "$ROOT" | cut -f1)
venv_mb=$(du -sm "$ROOT/root/ecgedge/.venv" | cut -f1)
apt_mb=$(du -sm "$ROOT/var/cache/apt" | cut -f1)
log "setup.sh: ${setup_s} s; root now ${after_mb} MB (+$(( after_mb - base_mb )) MB: .venv ${venv_mb} MB, apt cache ${apt_mb} MB)"

s=$(date +%s)
set +e
in_root bash -c 'cd /root/ecgedge && make demo' >/tmp/ecgedge-fresh-demo.log 2>&1
rc=$?
set -e
demo_s=$(( $(date +%s) - s ))
tail -n 12 /tmp/ecgedge-fresh-demo.log
[ "$rc" = 0 ] || { log "make demo failed (exit $rc) after $demo_s s"; exit 1; }
final_mb=$(du -sm --exclude=proc --exclude=sys --exclude=dev "$ROOT" | cut -f1)
log "make demo: ${demo_s} s; root ${final_mb} MB"
cat <<EOF
fresh Debian 12 amd64: base ${base_mb} MB; setup.sh ${setup_s} s, +$(( after_mb - base_mb )) MB (.venv ${venv_mb} MB, apt cache ${apt_mb} MB); make demo ${demo_s} s; total $(( $(date +%s) - t0 )) s, root ${final_mb} MB
EOF
