#!/usr/bin/env bash
# The stream-training benchmark on MovieLens-1M (ratings in timestamp order, 2000-04 to 2003-02,
# cut into windows of equal rows): progressive AUC (each window scored before it is trained on)
# for MMoE and M3oE under each embedding-table policy, with live rows and table memory; and
# training throughput of stream mode next to epoch mode for the same model. Prints Markdown.
#
#   bash benches/stream.sh ML1M_DIR [OUT_DIR]
#
# ML1M_DIR is the official ml-1m folder (https://grouplens.org/datasets/movielens/1m/).
# WINDOW_ROWS (default 50000) sets the window size; MODELS (default "mmoe m3oe") the models;
# POLICIES (default: all) the policy numbers to run, e.g. POLICIES="0 1 2 4 5 6 7".
set -euo pipefail
ML=${1:?usage: benches/stream.sh ML1M_DIR [OUT_DIR]}
OUT=${2:-runs/stream-bench}
BIN=${MDREC_BIN:-target/release/mdrec}
WINDOW_ROWS=${WINDOW_ROWS:-50000}
MODELS=${MODELS:-mmoe m3oe}
mkdir -p "$OUT"
[ -x "$BIN" ] || cargo build --release --workspace

T=train.stream.tables
# capacities apply to the id tables (users, movies); the small tables (gender, age, ...) keep
# every value
CAP="$T.capacity_tables=[\"user_id\",\"movie_id\"]"
policies=(
  "frozen after window 1|$T.admission=\"first_window\""
  "admit every id|$T.admission=\"all\""
  "min_count 2|$T.admission=\"min_count\" $T.min_count=2"
  "probability 0.5|$T.admission=\"probability\" $T.probability=0.5"
  "50 % of user and movie ids, score|$CAP $T.capacity_fraction=0.5 $T.eviction=\"score\" $T.score_decay=0.5"
  "50 % of user and movie ids, LRU|$CAP $T.capacity_fraction=0.5 $T.eviction=\"lru\""
  "25 % of user and movie ids, score|$CAP $T.capacity_fraction=0.25 $T.eviction=\"score\" $T.score_decay=0.5"
  "25 % of user and movie ids, LRU|$CAP $T.capacity_fraction=0.25 $T.eviction=\"lru\""
  "admit every id, TTL 4 windows|$T.admission=\"all\" $T.ttl_windows=4"
  "50 % of user and movie ids, score, decay 0.8|$CAP $T.capacity_fraction=0.5 $T.eviction=\"score\" $T.score_decay=0.8"
)

for m in $MODELS; do
  for i in ${POLICIES:-${!policies[@]}}; do
    IFS='|' read -r label sets <<<"${policies[$i]}"
    dir="$OUT/$m-p$i"
    [ -f "$dir/report.json" ] && continue
    args=()
    for s in $sets; do args+=(--set "$s"); done
    "$BIN" train --dataset movielens-1m --data-dir "$ML" --model "$m" --seed 2022 --quiet \
      --set 'train.mode="stream"' --set "train.stream.window_rows=$WINDOW_ROWS" "${args[@]}" \
      --out "$dir" >/dev/null
    echo "$label" >"$dir/policy.txt"
  done
  [ -f "$OUT/$m-epoch/report.json" ] || "$BIN" train --dataset movielens-1m --data-dir "$ML" \
    --model "$m" --seed 2022 --epochs 1 --quiet --out "$OUT/$m-epoch" >/dev/null
done

python3 - "$OUT" $MODELS <<'PY'
import json, sys, os
out, models = sys.argv[1], sys.argv[2:]
print("| model | tables | progressive AUC (mean cells) | task-pooled AUC | LogLoss | live rows at end | evicted | peak table MiB | train rows/s |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for m in models:
    runs = [d for d in os.listdir(out) if d.startswith(f"{m}-p") and d[len(m) + 2:].isdigit()]
    for i in sorted(int(d[len(m) + 2:]) for d in runs):
        d = f"{out}/{m}-p{i}"
        if not os.path.exists(f"{d}/report.json"):
            continue
        r = json.load(open(f"{d}/report.json"))
        s = r["stream"]
        label = open(f"{d}/policy.txt").read().strip()
        live = sum(t["live_rows"] for t in s["tables"])
        ev = sum(t["evicted"] for t in s["tables"])
        o = r["test"]["overall"]
        print(f"| {m} | {label} | {o['auc_mean_cells']*100:.2f} | {o['auc_task_pooled_mean']*100:.2f} | {o['logloss']:.4f} | {live} | {ev} | {s['peak_table_bytes']/2**20:.2f} | {s['train_rows_per_s']:.0f} |")
print()
print("| model | mode | train rows/s |")
print("|---|---|---:|")
for m in models:
    e = json.load(open(f"{out}/{m}-epoch/report.json"))
    s = json.load(open(f"{out}/{m}-p1/report.json"))
    print(f"| {m} | epoch (1 epoch, M3oE split) | {e['timing']['train_samples_per_s']:.0f} |")
    print(f"| {m} | stream (admit every id, {s['stream']['windows_by']} windows) | {s['stream']['train_rows_per_s']:.0f} |")
PY
