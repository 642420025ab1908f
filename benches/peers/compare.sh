#!/usr/bin/env bash
# mdrec against its PyTorch twin, side by side: runs `mdrec speed` and the twin of the same
# workload one after the other (never at the same time), N times, alternating which goes first
# (run 1 mdrec first, run 2 the twin first, ...), and prints a Markdown table of training and
# inference samples/s, the ratios mdrec / twin, the cores each kept busy while training, and the
# median ratios. See README.md in this folder.
#
#   WORKLOAD=engine N=3 benches/peers/compare.sh
#   WORKLOAD=m3oe N=1 ML1M_DIR=ml-1m benches/peers/compare.sh
#
# Environment:
#   WORKLOAD   engine (default), m3oe, ple, star, aread
#   N          runs (default 3)
#   MDREC_BIN  the mdrec binary (default target/release/mdrec; build it with
#              `cargo build --release -p mdrec-cli`)
#   PYTHON     an interpreter with torch (default python3)
#   STEPS      timed training steps (default 60); WARMUP untimed steps (default 5)
#   THREADS    the twin's torch.set_num_threads (default 2)
#   REPLICAS   mdrec's train.replicas (default 1): data-parallel replica threads in the one
#              process (each computes its share of every batch; same global batch as the twin)
#   ML1M_DIR   the unzipped ml-1m folder (MovieLens workloads; default: `mdrec data fetch
#              movielens-1m`, which downloads it into mdrec's cache once)
#   LOG_DIR    where each program's full output is kept (default: a new temporary folder)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORKLOAD="${WORKLOAD:-engine}"
N="${N:-3}"
MDREC_BIN="${MDREC_BIN:-target/release/mdrec}"
PYTHON="${PYTHON:-python3}"
STEPS="${STEPS:-60}"
WARMUP="${WARMUP:-5}"
THREADS="${THREADS:-2}"
REPLICAS="${REPLICAS:-1}"
LOG_DIR="${LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/mdrec-peers.XXXXXX")}"

die() {
    echo "compare.sh: $*" >&2
    exit 2
}

mkdir -p "$LOG_DIR" || die "cannot create LOG_DIR '$LOG_DIR'"
[[ "$N" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer, got '$N'"
[[ "$STEPS" =~ ^[1-9][0-9]*$ ]] || die "STEPS must be a positive integer, got '$STEPS'"
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "WARMUP must be a non-negative integer, got '$WARMUP'"
[[ "$REPLICAS" =~ ^[1-9][0-9]*$ ]] || die "REPLICAS must be a positive integer, got '$REPLICAS'"
[[ -x "$MDREC_BIN" ]] || die "no mdrec binary at '$MDREC_BIN': build it with \`cargo build --release -p mdrec-cli\` or set MDREC_BIN"
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    cat >&2 <<EOF
compare.sh: PyTorch is not installed for '$PYTHON'.
Install it with
    $PYTHON -m pip install torch
or, CPU-only (a smaller download):
    $PYTHON -m pip install torch --index-url https://download.pytorch.org/whl/cpu
or point PYTHON at an interpreter that has torch (PYTHON=.venv/bin/python).
EOF
    exit 3
fi

ml1m_dir() {
    if [[ -z "${ML1M_DIR:-}" ]]; then
        ML1M_DIR="$("$MDREC_BIN" data fetch movielens-1m | tail -n 1)"
    fi
    [[ -f "$ML1M_DIR/ratings.dat" ]] || die "ML1M_DIR='$ML1M_DIR' has no ratings.dat"
}

common=(--steps "$STEPS" --warmup "$WARMUP")
twin_common=("${common[@]}" --threads "$THREADS")
mdrec_replicas=(--set "train.replicas=$REPLICAS")
case "$WORKLOAD" in
engine)
    mdrec_args=(speed --workload engine "${common[@]}" "${mdrec_replicas[@]}")
    twin_cmd=("$PYTHON" "$here/engine.py" "${twin_common[@]}")
    ;;
m3oe)
    ml1m_dir
    # benches/specs/m3oe_official.toml: batch 40960, lr 0.01, dense Adam on the embedding rows,
    # 4 shared experts, fusion weights trained jointly (split m3oe, merged order: the defaults).
    mdrec_args=(speed --workload dataset --model m3oe --data-dir "$ML1M_DIR" --batch-size 40960
        --set train.lr=0.01 --set train.embedding.optimizer=adam_dense
        --set model.automl=joint --set model.num_shared_experts=4 "${common[@]}" "${mdrec_replicas[@]}")
    twin_cmd=("$PYTHON" "$here/m3oe.py" --data-dir "$ML1M_DIR" "${twin_common[@]}")
    ;;
ple | star | aread)
    ml1m_dir
    # mdrec's default training config and the model's default config, batch 1024.
    mdrec_args=(speed --workload dataset --model "$WORKLOAD" --data-dir "$ML1M_DIR" "${common[@]}" "${mdrec_replicas[@]}")
    twin_cmd=("$PYTHON" "$here/zoo.py" --model "$WORKLOAD" --data-dir "$ML1M_DIR" "${twin_common[@]}")
    ;;
*)
    die "unknown WORKLOAD '$WORKLOAD'; expected engine, m3oe, ple, star or aread"
    ;;
esac

# `mdrec speed` prints each table row as it is measured and then the table: the last data row.
mdrec_figures() {
    grep '^| ' "$1" | grep -v '^| workload ' | tail -n 1 |
        awk -F'|' '{ gsub(/ /, "", $5); gsub(/ /, "", $6); gsub(/ /, "", $7); print $5, $6, $7 }'
}
twin_figures() {
    grep '^TWIN ' "$1" | tail -n 1 |
        awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
               print v["train"], v["cores"], v["infer"] }'
}

run_mdrec() {
    local log="$LOG_DIR/run$1-mdrec.log"
    echo "run $1: ${MDREC_BIN} ${mdrec_args[*]}" >&2
    "$MDREC_BIN" "${mdrec_args[@]}" >"$log" 2>&1 || die "mdrec failed (run $1); see $log"
    read -r m_train m_cores m_infer < <(mdrec_figures "$log")
    [[ -n "${m_infer:-}" ]] || die "no figures in mdrec's output; see $log"
}
run_twin() {
    local log="$LOG_DIR/run$1-twin.log"
    echo "run $1: ${twin_cmd[*]}" >&2
    "${twin_cmd[@]}" >"$log" 2>&1 || die "the twin failed (run $1); see $log"
    read -r t_train t_cores t_infer < <(twin_figures "$log")
    [[ -n "${t_infer:-}" ]] || die "no figures in the twin's output; see $log"
}

rows=""
train_ratios=()
infer_ratios=()
for ((i = 1; i <= N; i++)); do
    if ((i % 2 == 1)); then
        run_mdrec "$i"
        run_twin "$i"
        first="mdrec"
    else
        run_twin "$i"
        run_mdrec "$i"
        first="twin"
    fi
    tr=$(awk -v a="$m_train" -v b="$t_train" 'BEGIN { printf "%.2f", a / b }')
    ir=$(awk -v a="$m_infer" -v b="$t_infer" 'BEGIN { printf "%.2f", a / b }')
    train_ratios+=("$tr")
    infer_ratios+=("$ir")
    rows+=$(printf '| %d (%s first) | %.0f | %.0f | %s× | %.0f | %.0f | %s× | %.2f | %.2f |' \
        "$i" "$first" "$m_train" "$t_train" "$tr" "$m_infer" "$t_infer" "$ir" "$m_cores" "$t_cores")
    rows+=$'\n'
done

median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

torch_version=$("$PYTHON" -c 'import torch; print(torch.__version__)')
echo
echo "### ${WORKLOAD}: mdrec (${REPLICAS} replica(s)) vs PyTorch ${torch_version} twin (${STEPS} timed steps after ${WARMUP} warm-up; twin threads ${THREADS}; $(nproc) cores)"
echo
echo "| run | mdrec train/s | twin train/s | train ratio | mdrec inference/s | twin inference/s | inference ratio | mdrec cores busy | twin cores busy |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s' "$rows"
echo
echo "Median ratio mdrec / twin: training $(median "${train_ratios[@]}")×, inference $(median "${infer_ratios[@]}")×."
echo "Full outputs: $LOG_DIR"
