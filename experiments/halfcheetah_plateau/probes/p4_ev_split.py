"""P4: explained variance of a FIXED critic (a run's final checkpoint) on 4 x 512 batches, split by whether an
episode ends in the batch; also Var[target]. No learning: only the layout is varied."""
import sys, numpy as np, torch
from trpo_lab.run_folder import build_from_folder
from trpo_lab.envs import make_vec_env, RewardScaler
from trpo_lab.policies import ValueFunction
from trpo_lab.rollout import RolloutCollector
from trpo_lab.critic import explained_variance
policy, norm, cfg, state = build_from_folder(sys.argv[1])
critic = ValueFunction(17); critic.load_state_dict(state["critic"])
rs = RewardScaler(4, 0.99); rs.load_state_dict({"rms": state["reward_scaler"]["rms"], "ret": [0.0] * 4})
torch.manual_seed(0)
col = RolloutCollector(make_vec_env("HalfCheetah-v5", 4), policy, critic, 512, 0.99, 0.95, norm, rs, seed=5)
norm.update = lambda x: None   # keep the checkpoint's statistics
out = {True: [], False: []}
for k in range(int(sys.argv[2]) if len(sys.argv) > 2 else 8):
    b = col.collect()
    out[len(b.episode_returns) > 0].append((explained_variance(b.values, b.returns), float(b.returns.var())))
for ends, v in out.items():
    if v: print(f"batches {'with' if ends else 'without'} an episode end: n={len(v)}  EV {np.round([e for e, _ in v], 2).tolist()}  Var[target] {np.round([x for _, x in v], 3).tolist()}")
