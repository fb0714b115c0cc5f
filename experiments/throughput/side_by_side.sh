#!/usr/bin/env bash
# Side-by-side whole-loop throughput: trpo-lab vs sb3-contrib vs Tianshou, alternating, REPS rounds.
# Usage: experiments/throughput/side_by_side.sh [REPS] [STEPS] [OUT.jsonl]
# Needs the peers venv of experiments/throughput/bench/README.md at ~/peers. One JSON line per run is appended
# to OUT (default experiments/throughput/results/side_by_side.jsonl), tagged with "tag" and "round".
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=${1:-3}
STEPS=${2:-100000}
OUT=${3:-experiments/throughput/results/side_by_side.jsonl}
PY=${PY:-$( [ -x .venv/bin/python ] && echo "$PWD/.venv/bin/python" || command -v python3 )}  # the repo's .venv if there is one
PEERS=${PEERS:-$HOME/peers/bin/python}
BENCH=${BENCH:-experiments/throughput/bench}
mkdir -p "$(dirname "$OUT")"

run() {  # run TAG ROUND CMD...
  local tag=$1 round=$2; shift 2
  local line
  line=$("$@" 2>/dev/null | tail -1)
  echo "$line" | $PY -c "import json,sys; d=json.loads(sys.stdin.read()); d['tag']='$tag'; d['round']=$round; print(json.dumps(d))" >> "$OUT"
  echo "$(date +%T) $tag round $round: $(echo "$line" | $PY -c "import json,sys; print(json.loads(sys.stdin.read())['env_steps_per_s'])") env-steps/s (load $(cut -d' ' -f1 /proc/loadavg))"
}

for r in $(seq 1 "$REPS"); do
  for ENV in Hopper-v5 HalfCheetah-v5; do
    if [ "$ENV" = Hopper-v5 ]; then E=hopper; KL=0.01; else E=halfcheetah; KL=0.04; fi
    run "ours-default/$ENV" "$r" $PY scripts/benchmark.py env=$E total_env_steps=$STEPS
    run "ours-sb3zoo/$ENV" "$r" $PY scripts/benchmark.py env=$E total_env_steps=$STEPS \
        rollout.num_envs=2 rollout.batch_size=2048 algo.solver.iters=25 critic.epochs=20 critic.minibatch_size=128 algo.max_kl=$KL
    run "sb3-contrib/$ENV" "$r" $PEERS $BENCH/sb3_trpo.py $ENV $STEPS --config zoo --threads 1
    run "ours-tianshou/$ENV" "$r" $PY scripts/benchmark.py env=$E total_env_steps=$STEPS \
        rollout.num_envs=16 rollout.batch_size=1024 algo.solver.iters=10 critic.epochs=20 critic.minibatch_size=1024 \
        policy.log_std_init=-0.5 algo.max_kl=0.01
    run "tianshou/$ENV" "$r" $PEERS $BENCH/tianshou_trpo.py $ENV $STEPS --venv dummy --threads 1
  done
done
