#!/usr/bin/env bash
# Set up everything mmtk needs on a fresh Debian/Ubuntu machine, idempotently:
# system packages (Tesseract for OCR, ffmpeg for test media, Chromium for the report's
# browser test) when we are root and apt exists, then a virtual environment in .venv
# with mmtk and its test extras.
# Sourced by run-example.sh and run-tests.sh; safe to run again (it skips what is there).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

can_apt=false
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then can_apt=true; fi
need_apt=()
command -v tesseract >/dev/null 2>&1 || need_apt+=(tesseract-ocr tesseract-ocr-eng)
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
# The OCR tests burn subtitles in DejaVu Sans (tests/ocr/conftest.py).
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
if [ ${#need_apt[@]} -gt 0 ]; then
  if $can_apt; then
    echo "setup: installing ${need_apt[*]} with apt-get" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: ${need_apt[*]} missing and not root; OCR tests will be skipped (install: sudo apt-get install ${need_apt[*]})" >&2
  fi
fi
# Headless Chromium renders the HTML report (evaluate --report) in its test. Debian's
# package; where apt has none that works (Ubuntu ships Chromium as a snap) only that
# test is skipped, so a failed install does not stop the set-up.
if ! command -v chromium >/dev/null 2>&1; then
  if $can_apt; then
    echo "setup: installing chromium with apt-get" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
      || echo "setup: chromium could not be installed; the report's browser test will be skipped" >&2
  else
    echo "setup: chromium missing and not root; the report's browser test will be skipped (install: sudo apt-get install chromium)" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)" >&2
  "$PYTHON" -m venv .venv
fi
# Reinstall only when pyproject.toml changed since the last successful install.
stamp=.venv/.mmtk-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing mmtk and its dependencies into .venv (first time: several minutes)" >&2
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  # PyTorch first, from its CPU wheel index on a machine without an NVIDIA GPU (see
  # scripts/torch_index.sh); an installed torch is left as it is (delete .venv to switch).
  # torchvision (open_clip needs it) comes from the same index: PyPI's build expects CUDA torch.
  if ! .venv/bin/python -m pip show -q torch >/dev/null 2>&1; then
    source scripts/torch_index.sh
    index=$(torch_index)
    if [ -n "$index" ]; then
      echo "setup: installing PyTorch from $index" >&2
      .venv/bin/python -m pip install -q --index-url "$index" torch torchvision
    fi
  fi
  # The ocr extra: the RapidOCR tests run (tests/ocr); the ray extra: tests/test_extract_ray.py
  # runs against a real local Ray cluster.
  .venv/bin/python -m pip install -q -e ".[test,ocr,ray]"
  touch "$stamp"
fi
