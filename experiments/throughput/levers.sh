#!/usr/bin/env bash
# What each lever buys: whole-loop env-steps/s on Hopper-v5 (defaults: 4 envs × 512 steps, CG 10,
# critic 10 epochs × 256), variants alternating, REPS rounds. ORIG is a copy of the tree before this
# work (git archive of the commit, with scripts/benchmark.py copied in); leave it empty to skip it.
# Usage: experiments/throughput/levers.sh [REPS] [STEPS] [OUT.jsonl]
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=${1:-3}
STEPS=${2:-100000}
OUT=${3:-experiments/throughput/results/levers.jsonl}
ORIG=${ORIG:-}
PY=${PY:-$( [ -x .venv/bin/python ] && echo "$PWD/.venv/bin/python" || command -v python3 )}  # the repo's .venv if there is one
mkdir -p "$(dirname "$OUT")"

run() {  # run TAG ROUND DIR ARGS...
  local tag=$1 round=$2 dir=$3; shift 3
  local line
  line=$(cd "$dir" && $PY scripts/benchmark.py "$@" 2>/dev/null | tail -1)
  echo "$line" | $PY -c "import json,sys; d=json.loads(sys.stdin.read()); d['tag']='$tag'; d['round']=$round; print(json.dumps(d))" >> "$OUT"
  echo "$(date +%T) $tag round $round: $(echo "$line" | $PY -c "import json,sys; d=json.loads(sys.stdin.read()); print(d['env_steps_per_s'], d['per_update_median_s'])") (load $(cut -d' ' -f1 /proc/loadavg))"
}

OFF_FISHER="algo.fisher.method=double_backprop"
for r in $(seq 1 "$REPS"); do
  for ENV in hopper halfcheetah; do
    B="env=$ENV total_env_steps=$STEPS"
    if [ -n "$ORIG" ]; then run "0-original/$ENV" "$r" "$ORIG" $B; fi
    run "1-all-off/$ENV" "$r" . $B --vector-env gymnasium --actor torch --critic-impl autograd $OFF_FISHER
    run "2-+inprocess-env/$ENV" "$r" . $B --actor torch --critic-impl autograd $OFF_FISHER
    run "3-+numpy-actor/$ENV" "$r" . $B --critic-impl autograd $OFF_FISHER
    run "4-+jmj-fisher/$ENV" "$r" . $B --critic-impl autograd
    run "5-+fused-critic=default/$ENV" "$r" . $B
    # 6-subprocess-env (--vector-env subprocess) was measured here and rejected; see README.md
    run "7-torch_threads=2/$ENV" "$r" . $B torch_threads=2
  done
done
