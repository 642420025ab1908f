#!/usr/bin/env bash
# The serving benchmark: MMoE and M3oE trained on MovieLens-1M, served by `mdrec serve` on a
# loopback port, driven by `mdrec loadgen` at concurrency 1, 8 and 64 with 1 and 100 candidates
# per request, then a hot reload in the middle of a run; plus `mdrec speed`'s inference rate of
# the same models for comparison. Prints Markdown tables.
#
#   bash benches/serve.sh ML1M_DIR [OUT_DIR]
#
# ML1M_DIR is the official ml-1m folder (https://grouplens.org/datasets/movielens/1m/).
set -euo pipefail
ML=${1:?usage: benches/serve.sh ML1M_DIR [OUT_DIR]}
OUT=${2:-runs/serve-bench}
BIN=${MDREC_BIN:-target/release/mdrec}
REQUESTS=${REQUESTS:-2000}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-20}
PORT=${PORT:-18080}
mkdir -p "$OUT"
[ -x "$BIN" ] || cargo build --release --workspace

for m in mmoe m3oe; do
  [ -f "$OUT/repo/$m/1/weights.safetensors" ] || {
    mkdir -p "$OUT/repo/$m"
    "$BIN" train --dataset movielens-1m --data-dir "$ML" --model "$m" --epochs 1 --seed 2022 --quiet --out "$OUT/repo/$m/1" >/dev/null
  }
done
"$BIN" data export --dataset movielens-1m --data-dir "$ML" --split test --out "$OUT/test.csv"

"$BIN" serve --model-repo "$OUT/repo" --addr "127.0.0.1:$PORT" 2>"$OUT/serve.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "127.0.0.1:$PORT/v2/health/ready" >/dev/null && break; sleep 0.2; done

head=""   # the first loadgen prints the table header
for m in mmoe m3oe; do
  for cand in 1 100; do
    for c in 1 8 64; do
      "$BIN" loadgen --run "$OUT/repo/$m/1" --input "$OUT/test.csv" --addr "127.0.0.1:$PORT" \
        --model "$m" --concurrency "$c" --candidates "$cand" --requests "$REQUESTS" \
        --seconds "$SECONDS_PER_RUN" --label "$m c=$c" $head
      head=--row-only
    done
  done
done

# Hot reload under load: version 2 of mmoe appears while a loadgen run is in flight.
( sleep 2; cp -r "$OUT/repo/mmoe/1" "$OUT/repo/mmoe/.2.tmp" && mv "$OUT/repo/mmoe/.2.tmp" "$OUT/repo/mmoe/2" ) &
"$BIN" loadgen --run "$OUT/repo/mmoe/1" --input "$OUT/test.csv" --addr "127.0.0.1:$PORT" \
  --model mmoe --concurrency 8 --candidates 100 --requests 100000 --seconds 8 --row-only --label "mmoe, hot reload to v2"
wait %2 2>/dev/null || true
echo
echo "served version after the reload: $(curl -s "127.0.0.1:$PORT/v2/models/mmoe" | python3 -c 'import json,sys; print(json.load(sys.stdin)["parameters"]["version"])')"
rm -rf "$OUT/repo/mmoe/2"
kill $SERVER; wait $SERVER 2>/dev/null || true
trap - EXIT

echo
pattern='^\| (workload|---|[a-z0-9]+ on )'   # the first table with its header, then rows only
for m in mmoe m3oe; do
  "$BIN" speed --workload dataset --dataset movielens-1m --data-dir "$ML" --model "$m" --steps 5 --warmup 1 | grep -E "$pattern" || true
  pattern='^\| [a-z0-9]+ on '
done
