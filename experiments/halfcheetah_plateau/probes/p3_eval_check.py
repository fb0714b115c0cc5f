"""P3: re-evaluate a run's final checkpoint with a plain gymnasium loop (independent of trpo_lab.evaluate):
deterministic (mean action) and stochastic (sampled, as in training), 3 episodes each."""
import sys, numpy as np, torch, gymnasium as gym
from trpo_lab.run_folder import build_from_folder
policy, norm, cfg, state = build_from_folder(sys.argv[1])
rng = np.random.default_rng(0)
for mode in ("deterministic", "stochastic"):
    rets, xs = [], []
    for ep in range(3):
        env = gym.make(cfg["env"]["id"]); o, _ = env.reset(seed=1000 + ep); R = 0.0; done = False
        while not done:
            with torch.no_grad():
                mean, log_std = policy.dist_params(torch.from_numpy(norm.normalize(o[None])))
            a = mean[0].numpy() + (0 if mode == "deterministic" else np.exp(log_std.detach().numpy()) * rng.standard_normal(6))
            o, r, term, trunc, info = env.step(np.clip(a, -1, 1)); R += r; done = term or trunc
        rets.append(R); xs.append(info["x_position"])
    mean_abs = float(np.abs(mean.numpy()).mean())
    print(f"{mode}: returns {np.round(rets,1).tolist()}  final x {np.round(xs,1).tolist()}  |mean action| at end {mean_abs:.2f}  std {np.exp(log_std.detach().numpy()).round(2).tolist()}")
