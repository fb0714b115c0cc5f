#!/usr/bin/env bash
# Update cost (policy update + critic fit) on one fixed batch: the scaling table, the Fisher/critic
# levers, and torch.set_num_threads 1 vs 2 (quiet, then beside one busy-loop process).
# Usage: experiments/throughput/update_costs.sh [OUT.jsonl]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-experiments/throughput/results/update_costs.jsonl}
PY=${PY:-$( [ -x .venv/bin/python ] && echo "$PWD/.venv/bin/python" || command -v python3 )}  # the repo's .venv if there is one
ORIG=${ORIG:-}
mkdir -p "$(dirname "$OUT")"

run() {  # run TAG DIR ARGS...
  local tag=$1 dir=$2; shift 2
  local line
  line=$(cd "$dir" && $PY scripts/benchmark.py --update-only "$@" 2>/dev/null | tail -1)
  echo "$line" | $PY -c "import json,sys; d=json.loads(sys.stdin.read()); d['tag']='$tag'; print(json.dumps(d))" >> "$OUT"
  echo "$(date +%T) $tag: $(echo "$line" | $PY -c "import json,sys; d=json.loads(sys.stdin.read()); print(d['threads'])") (load $(cut -d' ' -f1 /proc/loadavg))"
}

# 1. scaling: batch 1k/4k/16k × hidden 64/256 (policy and critic), defaults otherwise (CG 10, critic 10 × 256)
for H in 64 256; do
  for B in 1024 4096 16384; do
    run "scaling/h$H/b$B" . env=hopper rollout.batch_size=$B "policy.hidden_sizes=[$H,$H]" "critic.hidden_sizes=[$H,$H]" --repeats 5
  done
done

# 2. levers on a 2048 batch, with the defaults and with sb3-contrib's RL-Zoo settings (CG 25, critic 20 × 128)
SB3="rollout.num_envs=2 algo.solver.iters=25 critic.epochs=20 critic.minibatch_size=128"
for S in default sb3zoo; do
  X=""; [ "$S" = sb3zoo ] && X=$SB3
  if [ -n "$ORIG" ]; then run "levers/$S/original" "$ORIG" env=hopper $X --repeats 7; fi
  run "levers/$S/double_backprop+autograd_critic" . env=hopper $X algo.fisher.method=double_backprop --critic-impl autograd --repeats 7
  run "levers/$S/jmj+autograd_critic" . env=hopper $X --critic-impl autograd --repeats 7
  run "levers/$S/double_backprop+fused_critic" . env=hopper $X algo.fisher.method=double_backprop --repeats 7
  run "levers/$S/jmj+fused_critic=default" . env=hopper $X --repeats 7
  run "levers/$S/jmj+fused_critic+subsample0.1" . env=hopper $X algo.fisher.subsample=0.1 --repeats 7
  run "levers/$S/jmj+critic_full_batch_x10" . env=hopper $X critic.minibatch_size=2048 critic.epochs=10 --repeats 7
done

# 3. threads 1 vs 2, interleaved in one process; quiet, then beside one busy-loop process
run "threads/quiet" . env=hopper --threads 1,2 --repeats 9
run "threads/quiet/sb3zoo" . env=hopper $SB3 --threads 1,2 --repeats 9
$PY -c "while True: pass" & HOG=$!
trap 'kill $HOG 2>/dev/null || true' EXIT
sleep 2
run "threads/beside_busy_process" . env=hopper --threads 1,2 --repeats 9
run "threads/beside_busy_process/sb3zoo" . env=hopper $SB3 --threads 1,2 --repeats 9
kill $HOG
