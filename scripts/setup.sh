#!/usr/bin/env bash
# Set up a fresh Debian machine with Python 3.11: Debian packages (only those missing), a venv in
# .venv, pinned Python dependencies (constraints.txt) and ecgedge itself (editable).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(qemu-system-arm qemu-system-data gcc-arm-none-eabi libnewlib-arm-none-eabi socat clang chromium qemu-user-static binfmt-support debootstrap curl)
missing=()
for p in "${DEBS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.ecgedge-deps
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python dependencies (pinned by constraints.txt; torch is the CPU build)"
  .venv/bin/pip install -q --upgrade pip
  # torch first and alone, from its pinned CPU build, so nothing can pull a CUDA torch
  .venv/bin/pip install -q -c constraints.txt "torch==2.13.0"
  .venv/bin/pip install -q -c constraints.txt -e ".[all]"
  echo "$want" > "$stamp"
fi
echo "setup: ready (.venv)"
