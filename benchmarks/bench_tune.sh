#!/usr/bin/env bash
# `mmtk tune` on a real dataset (BENCHMARKS.md, "Hyper-parameter search"): a 20-trial
# study of gmu on Clothing reviews (minilm on Review Text + the tabular columns), scored
# by validation macro-F1, its best configuration retrained, and the same model with its
# default settings trained beside it; both runs are then evaluated on test.csv.
# Needs the minilm features of val.csv and test.csv in $MMTK_STORE:
#   mmtk extract-features ../shared/data/tabular/Womens_Clothing_E-Commerce_Reviews/val.csv --backbone minilm --column "Review Text" --on-error skip
# Usage: MMTK_STORE=benchmarks/out/store bash benchmarks/bench_tune.sh [OUT [PRUNE_WARMUP]]
set -euo pipefail
DATA=../shared/data/tabular/Womens_Clothing_E-Commerce_Reviews
OUT=${1:-benchmarks/out/tune-clothing}
WARMUP=${2:-3}
COMMON=(--features "minilm@Review Text,tabular" --columns "$DATA/column_info.json" --model gmu --epochs 40 --on-error skip)
rm -rf "$OUT" && mkdir -p "$OUT"
start=$(date +%s.%N)
mmtk tune "$DATA/val.csv" "${COMMON[@]}" --space benchmarks/tune_clothing_space.yaml --trials 20 --metric macro_f1 --prune-warmup "$WARMUP" \
  --out "$OUT/study" --retrain --json 2>/dev/null > "$OUT/tune.json"
tuned=$(date +%s.%N)
mmtk train "$DATA/val.csv" "${COMMON[@]}" --monitor macro_f1 --out "$OUT/default" --json 2>/dev/null > "$OUT/default.json"
trained=$(date +%s.%N)
for run in study/best-run default; do
  mmtk evaluate "$OUT/$run" "$DATA/test.csv" --on-error skip --json 2>/dev/null > "$OUT/${run//\//-}.test.json"
done
python - "$OUT" "$start" "$tuned" "$trained" <<'PY'
import json, sys
out, start, tuned, trained = sys.argv[1], *map(float, sys.argv[2:])
summary = json.load(open(f"{out}/tune.json"))
default_val = json.load(open(f"{out}/default.json"))["val_metrics"]["metrics"]["macro_f1"]
best, default = (json.load(open(f"{out}/{name}.test.json"))["metrics"] for name in ("study-best-run", "default"))
counts = summary["counts"]
print(f"trials {sum(counts.values())}: {counts.get('complete', 0)} complete, {counts.get('pruned', 0)} pruned, "
      f"{counts.get('fail', 0)} failed; tune {tuned - start:.0f} s (with the retrain), one default train {trained - tuned:.0f} s "
      f"(ratio {(tuned - start) / (trained - tuned):.1f}); best trial {summary['best']['trial']} validation macro-F1 "
      f"{summary['best']['value']:.3f} (default {default_val:.3f}); test macro-F1 tuned {best['macro_f1']:.3f} vs default {default['macro_f1']:.3f}, "
      f"accuracy {best['accuracy']:.3f} vs {default['accuracy']:.3f}")
print("best params:", json.dumps(summary["best"]["params"]))
PY
