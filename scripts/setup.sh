#!/usr/bin/env bash
# Set up a Debian 12 (bookworm) machine: Debian packages (only those missing), a venv in .venv, pinned
# Python dependencies (constraints.txt) and ecgedge itself (editable). Safe to run again: it skips what
# is already there.
#
# Needs: root or sudo (apt-get), network access to the Debian mirror, PyPI and the PyTorch CPU index.
# Measured on a fresh Debian 12 amd64 root (docs/first_ten_minutes.md): see there for time and disk.
#
# torch: pip on x86-64 Linux picks PyPI's CUDA build of torch (with ~3 GB of nvidia-* wheels) unless told
# otherwise. We install torch first and alone with the PyTorch CPU index as an extra index: its
# "2.13.0+cpu" wheel sorts above PyPI's "2.13.0" and satisfies constraints.txt's torch==2.13.0, so
# nothing later pulls the CUDA build. ECGEDGE_TORCH_INDEX overrides the index (empty: only pip's own
# configuration, e.g. a local wheelhouse given by PIP_FIND_LINKS).
set -euo pipefail
cd "$(dirname "$0")/.."

# python3-venv: the venv step; gcc: host builds of the C engine and the QEMU counting plugin;
# make: `make demo` / `make test`; the rest: firmware (arm-none-eabi), QEMU, the fuzz build (clang),
# browser tests (chromium), the arm64 tier (qemu-user-static, binfmt-support, debootstrap).
DEBS=(python3 python3-venv python3-dev gcc make ca-certificates curl qemu-system-arm qemu-system-data
      gcc-arm-none-eabi libnewlib-arm-none-eabi socat clang chromium qemu-user-static binfmt-support debootstrap)
missing=()
for p in "${DEBS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: error: need root or sudo to apt-get install ${missing[*]}" >&2; exit 2; }
    SUDO="sudo"
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "setup: error: $PY is $("$PY" -V 2>&1); ecgedge needs Python >= 3.11 (Debian 12 has 3.11)" >&2; exit 2; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.ecgedge-deps
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python dependencies (pinned by constraints.txt; torch is the CPU build)"
  .venv/bin/pip install -q --upgrade pip
  TORCH_INDEX=${ECGEDGE_TORCH_INDEX-https://download.pytorch.org/whl/cpu}
  torch_pin=$(grep -E '^torch==' constraints.txt)
  # torch first and alone, from the CPU index, so nothing can pull a CUDA torch
  .venv/bin/pip install -q -c constraints.txt ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} "$torch_pin"
  .venv/bin/pip install -q -c constraints.txt -e ".[all]"
  # tf-keras (Keras 2: the only Keras whose LSTM the converter lowers to the fused int8 LSTM; the engine's
  # LSTM test models) declares `tensorflow`, which tensorflow-cpu already is under another name: no deps
  .venv/bin/pip install -q -c constraints.txt --no-deps "$(grep -E '^tf_keras==' constraints.txt)"
  .venv/bin/python -c 'import torch, sys; sys.exit(0 if torch.version.cuda is None else
    "setup: error: a CUDA build of torch was installed; see ECGEDGE_TORCH_INDEX in scripts/setup.sh")'
  echo "$want" > "$stamp"
fi
echo "setup: ready (.venv)"
