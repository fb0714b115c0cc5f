"""P5: sb3-contrib TRPO at the bench's RL-Zoo settings (experiments/throughput/bench/sb3_trpo_return.py), 200k steps, recording per
update the policy std and the step KL (sb3 units: mean over action dims; x6 = the joint KL trpo-lab reports)."""
import json, sys, numpy as np, torch
from sb3_contrib import TRPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
seed, steps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(1)
log = []
class T(TRPO):
    def train(self):
        super().train()
        v = self.logger.name_to_value
        log.append((self.num_timesteps, float(v["train/std"]), float(v["train/kl_divergence_loss"]), float(v["train/explained_variance"]),
                    float(np.mean([e["r"] for e in self.ep_info_buffer])) if self.ep_info_buffer else float("nan")))
venv = VecNormalize(make_vec_env("HalfCheetah-v5", n_envs=2, seed=seed, vec_env_cls=DummyVecEnv), gamma=0.99)
m = T("MlpPolicy", venv, n_steps=1024, batch_size=128, gamma=0.99, gae_lambda=0.95, sub_sampling_factor=1, cg_max_steps=25,
      cg_damping=0.1, n_critic_updates=20, learning_rate=1e-3, target_kl=0.04, device="cpu", seed=seed, verbose=0)
m.learn(total_timesteps=steps)
a = np.array(log)
at100 = a[(a[:, 0] >= 90000) & (a[:, 0] <= 110000), 4]
print(json.dumps({"seed": seed, "train_return_100k(ep_info mean)": round(float(np.mean(at100)), 1),
                  "train_return_last(ep_info mean of last 100 eps)": round(float(a[-1, 4]), 1), "std_end": round(float(a[-1, 1]), 3),
                  "kl_sb3units_last10": round(float(a[-10:, 2].mean()), 4), "kl_joint_last10(x6)": round(float(6 * a[-10:, 2].mean()), 4),
                  "EV_last10": round(float(a[-10:, 3].mean()), 2), "std_at": {int(t): round(s, 3) for t, s in a[::20, :2]}}))
