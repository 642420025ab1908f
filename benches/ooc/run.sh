#!/usr/bin/env bash
# The out-of-core benchmark: a generated interaction log (benches/ooc/make_log.py, CSV) of ROWS
# rows is prepared out of core (dataset.out_of_core: two passes in chunks, encoded columns in a
# store of mapped files) and trained for one epoch (MMoE, REPLICAS replica threads, block-wise
# shuffle), each step inside a memory cgroup limited to MEM_LIMIT_GB (page cache included) when
# this shell may create one (root on cgroup v1 or v2), and timed with /usr/bin/time. Prints
# Markdown.
#
#   bash benches/ooc/run.sh [OUT_DIR]
#
# ROWS (default 100000000), MEM_LIMIT_GB (default 2; 0 = no cgroup), SEED (default 7);
# SKIP_PREPARE=1 trains on the store an earlier run prepared; REPLICAS (default 2) replica
# threads.
# Needs python3 with numpy and pandas for the generator; about 4.4 GiB of CSV and 6.3 GiB of
# store per 100M rows on disk.
set -euo pipefail
OUT=${1:-runs/ooc}
ROWS=${ROWS:-100000000}
LIMIT=${MEM_LIMIT_GB:-2}
SEED=${SEED:-7}
REPLICAS=${REPLICAS:-2}
BIN=${MDREC_BIN:-target/release/mdrec}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
[ -x "$BIN" ] || cargo build --release --workspace
LOG=$OUT/log-$ROWS.csv
if [ ! -s "$LOG" ]; then
  python3 "$HERE/make_log.py" "$ROWS" "$LOG.part" "$SEED" 2>/dev/null
  mv "$LOG.part" "$LOG"
fi
CFG=$OUT/ooc.toml
cat >"$CFG" <<TOML
[dataset]
name = "csv"
schema = "$HERE/schema.toml"
files = ["$LOG"]
split = "random"
out_of_core = true
cache_dir = "$OUT/cache"

[model]
name = "mmoe"
num_experts = 4
expert_dims = [64]

[model.heads]
layout = "task"
tower_dims = [32]

[train]
seed = $SEED
epochs = 1
batch_size = 4096
loss = "mean"
replicas = $REPLICAS
patience = 1

[train.embedding]
dim = 8
TOML

# a memory cgroup for the measured commands, when one can be made
CG=""
if [ "$LIMIT" != 0 ]; then
  bytes=$(python3 -c "print(int($LIMIT * 2**30))")
  if [ -w /sys/fs/cgroup/memory ]; then
    CG=/sys/fs/cgroup/memory/mdrec-ooc-$$
    mkdir -p "$CG" && echo "$bytes" >"$CG/memory.limit_in_bytes"
    PEAK=memory.max_usage_in_bytes
  elif [ -w /sys/fs/cgroup/cgroup.subtree_control ]; then
    CG=/sys/fs/cgroup/mdrec-ooc-$$
    mkdir -p "$CG" && echo "$bytes" >"$CG/memory.max"
    PEAK=memory.peak
  else
    echo "note: cannot create a memory cgroup here; running without a limit" >&2
  fi
fi
cleanup() { [ -n "$CG" ] && rmdir "$CG" 2>/dev/null || true; }
trap cleanup EXIT

measure() { # name command...
  local name=$1
  shift
  if [ -n "$CG" ]; then
    [ -w "$CG/memory.max_usage_in_bytes" ] && echo 0 >"$CG/memory.max_usage_in_bytes" || true
    /usr/bin/time -v sh -c "echo \$\$ > $CG/cgroup.procs; exec \"\$@\"" sh "$@" >"$OUT/$name.out" 2>"$OUT/$name.log"
    echo "$(cat "$CG/$PEAK")" >"$OUT/$name.cgroup-peak"
  else
    /usr/bin/time -v "$@" >"$OUT/$name.out" 2>"$OUT/$name.log"
  fi
}

rm -rf "$OUT/run"
if [ -z "${SKIP_PREPARE:-}" ]; then
  rm -rf "$OUT/cache"
  measure prepare "$BIN" data prepare --config "$CFG" --seed "$SEED"
fi
measure train "$BIN" train --config "$CFG" --out "$OUT/run" --quiet

rss() { awk '/Maximum resident/ {printf "%.0f", $6 / 1024}' "$OUT/$1.log"; }
wall() { awk -F': ' '/Elapsed \(wall/ {print $2}' "$OUT/$1.log"; }
cgpeak() { [ -s "$OUT/$1.cgroup-peak" ] && python3 -c "print(round($(cat "$OUT/$1.cgroup-peak") / 2**20))" || echo "-"; }
store=$(du -sb "$OUT"/cache/*.mdrec-store | awk '{print $1}')
echo "## Out of core: $ROWS rows, CSV $(python3 -c "print(round($(stat -c %s "$LOG") / 2**30, 2))") GiB, store $(python3 -c "print(round($store / 2**30, 2))") GiB, cgroup limit ${LIMIT} GiB"
echo
echo "| step | wall | peak RSS (MiB) | cgroup peak incl. page cache (MiB) |"
echo "|---|---:|---:|---:|"
for s in prepare train; do echo "| $s | $(wall $s) | $(rss $s) | $(cgpeak $s) |"; done
echo
grep -h "out-of-core pass" "$OUT/prepare.log" | grep done || true
python3 - "$OUT/run" <<'PY'
import json, sys
run = sys.argv[1]
m = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
r = json.load(open(f"{run}/report.json"))
for e in m:
    print(f"epoch {e['epoch']}: {e['train_rows']} rows in {e['train_seconds']:.0f} s "
          f"({e['train_rows'] / e['train_seconds']:.0f} rows/s), valid AUC {100 * e['valid_auc_mean_cells']:.2f}")
print(f"test AUC (mean over cells) {100 * r['test']['overall']['auc_mean_cells']:.2f}")
PY
