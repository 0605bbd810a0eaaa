#!/usr/bin/env bash
# A CI gate: fail the pipeline when the model's macro-F1 on the test split drops below a
# floor. `evaluate --fail-under` exits 1 on a miss (2 on bad input), and `--json` keeps
# stdout machine-readable for the report step.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export MMTK_STORE="${MMTK_STORE:-$PWD/examples/out/store}"
run=${1:-examples/out/gmu}
floor=${2:-0.80}

mmtk extract-features examples/memes/test.jsonl --backbone efficientnet-lite0 --backbone minilm --quiet --json > /dev/null
if mmtk evaluate "$run" examples/memes/test.jsonl --json --fail-under "macro_f1=$floor" > examples/out/metrics.json; then
  echo "gate passed: macro_f1=$(python3 -c 'import json; print(round(json.load(open("examples/out/metrics.json"))["metrics"]["macro_f1"], 4))') >= $floor"
else
  status=$?
  echo "gate failed (exit $status): macro_f1 below $floor, see examples/out/metrics.json" >&2
  exit "$status"
fi
