#!/usr/bin/env bash
# The main job on the bundled example: extract image and text features with the offline
# backbones, train a GMU fusion model (with its learning curves), evaluate it on the test
# split (plots and an HTML report) and show three predictions with their modality
# weights. Does its own set-up first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
export MMTK_STORE="${MMTK_STORE:-$PWD/examples/out/store}"
data=examples/memes

set -x
mmtk extract-features "$data/train.jsonl" --backbone efficientnet-lite0 --backbone minilm
mmtk extract-features "$data/test.jsonl" --backbone efficientnet-lite0 --backbone minilm
mmtk train "$data/train.jsonl" --features efficientnet-lite0,minilm --model gmu --task label:binary --plots --out examples/out/gmu
mmtk evaluate examples/out/gmu "$data/test.jsonl" --plots examples/out/plots --report examples/out/report.html
mmtk predict examples/out/gmu "$data/test.jsonl" --explain | head -n 3
