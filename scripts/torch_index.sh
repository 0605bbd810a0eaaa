# Which package index pip takes PyTorch from; sourced by scripts/setup.sh (defines
# functions only, so tests can source it and replace the probes).
#
# PyPI's Linux torch wheels are the CUDA build: on a machine without an NVIDIA GPU they
# pull ~3 GB of nvidia-* wheels that can never run. PyTorch's CPU wheel index has the
# same versions without them. It is used when there is no GPU and the index answers
# within a few seconds; otherwise (a GPU, or a machine that reaches only a registry
# mirror) pip resolves torch as usual.
#
# MMTK_TORCH_INDEX overrides the choice: auto (default), cpu, default (pip's own
# resolution), or an index URL such as https://download.pytorch.org/whl/cu124.

TORCH_CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
# Seconds the probe may take in all (DNS, connect, answer).
TORCH_PROBE_SECONDS=${TORCH_PROBE_SECONDS:-5}

os_name() { uname -s; }

has_nvidia_gpu() {
  command -v nvidia-smi >/dev/null 2>&1 && return 0
  compgen -G "/dev/nvidia[0-9]*" >/dev/null 2>&1
}

# True when the CPU index answers an HTTP request within TORCH_PROBE_SECONDS. Python's
# socket timeout does not cover name resolution, so coreutils' timeout bounds the whole
# probe where it exists; stdin is closed (CI runs without one).
cpu_index_answers() {
  local python=${PYTHON:-python3}
  local code='import sys, urllib.request
urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="HEAD"), timeout=float(sys.argv[2]))'
  local limit=()
  command -v timeout >/dev/null 2>&1 && limit=(timeout "$TORCH_PROBE_SECONDS")
  ${limit[@]+"${limit[@]}"} "$python" -c "$code" "${TORCH_CPU_INDEX%/}/torch/" "$TORCH_PROBE_SECONDS" </dev/null >/dev/null 2>&1
}

# Prints the index URL to install torch and torchvision from, or nothing for pip's
# default resolution. Exit status 2 for a bad MMTK_TORCH_INDEX.
torch_index() {
  local choice=${MMTK_TORCH_INDEX:-auto}
  case "$choice" in
    default) ;;
    cpu) echo "$TORCH_CPU_INDEX" ;;
    auto)
      # macOS and Windows wheels on PyPI carry no CUDA libraries: nothing to save there.
      if [ "$(os_name)" = Linux ] && ! has_nvidia_gpu && cpu_index_answers; then
        echo "$TORCH_CPU_INDEX"
      fi
      ;;
    http://* | https://* | file://*) echo "$choice" ;;
    *)
      echo "setup: MMTK_TORCH_INDEX=$choice is not auto, cpu, default or an index URL (e.g. https://download.pytorch.org/whl/cu124)" >&2
      return 2
      ;;
  esac
}
