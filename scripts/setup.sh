#!/usr/bin/env bash
# Create .venv inside the clone and install xrec with the given extras (idempotent, fast on re-run).
#   scripts/setup.sh            # runtime only
#   scripts/setup.sh dev,ray    # + test and Ray extras
# On a machine without an NVIDIA GPU, torch comes from PyTorch's CPU wheel index (never the multi-GB
# CUDA build); with `nvidia-smi` present, the default CUDA build is installed instead.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "xrec needs Python >= 3.11 (found $("$python" --version 2>&1)); set PYTHON=..." >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.xrec-setup-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)-${extras//,/-}"
[ -f "$stamp" ] && exit 0
pip=(.venv/bin/python -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "${pip[@]}" install -q "torch>=2.4"
  else
    # The CPU index's "+cpu" build outranks PyPI's CUDA build of the same version; where that
    # index is unreachable, pip warns once (--retries 0) and takes a CPU wheel it finds locally.
    "${pip[@]}" install -q --retries 0 "torch==2.13.0" \
      --extra-index-url "${XREC_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
  fi
fi
"${pip[@]}" install -q -e ".${extras:+[$extras]}"
rm -f .venv/.xrec-setup-*
touch "$stamp"
