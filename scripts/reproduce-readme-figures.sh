#!/usr/bin/env bash
# Reproduce the README's figures on the bundled example: the GMU fusion model's test
# accuracy, and that of a concat model trained on each modality alone (the README says
# fusion solves the task and one modality stays at chance). Prints one line per model,
# then their comparison with bootstrap intervals and paired tests against fusion.
# Does its own set-up; features are cached in $MMTK_STORE (default examples/out/store),
# so a second run only trains and evaluates.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
export MMTK_STORE="${MMTK_STORE:-$PWD/examples/out/store}"
data=examples/memes
out=examples/out/readme-figures

mmtk extract-features "$data/train.jsonl" --backbone efficientnet-lite0 --backbone minilm --quiet --json > /dev/null
mmtk extract-features "$data/test.jsonl" --backbone efficientnet-lite0 --backbone minilm --quiet --json > /dev/null

# name, model, features: the README's run and the two one-modality baselines.
runs=(
  "fusion gmu efficientnet-lite0,minilm"
  "image-only concat efficientnet-lite0"
  "text-only concat minilm"
)
for entry in "${runs[@]}"; do
  read -r name model features <<< "$entry"
  mmtk train "$data/train.jsonl" --features "$features" --model "$model" --task label:binary --out "$out/$name" --quiet > /dev/null
  mmtk evaluate "$out/$name" "$data/test.jsonl" --json --quiet \
    | python -c 'import json, sys; r = json.load(sys.stdin); n, m = r["n"], r["metrics"]; a, f = m["accuracy"], m["macro_f1"]; print(f"{sys.argv[1]:<11} {sys.argv[2]:<7} {sys.argv[3]:<29} n={n} accuracy {a:.3f} macro_f1 {f:.3f}")' \
      "$name" "$model" "$features"
done
# The three runs side by side: 95% intervals, and each one-modality run against fusion.
mmtk evaluate "$out/fusion" "$out/image-only" "$out/text-only" "$data/test.jsonl" --quiet
