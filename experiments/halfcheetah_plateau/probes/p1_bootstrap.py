"""P1: time-limit bootstrap on HalfCheetah-v5 with observation normalisation AND reward scaling on,
against an independent replay + hand GAE (numpy, per env, episode by episode)."""
import gymnasium as gym, numpy as np, torch
from trpo_lab.envs import make_vec_env, ObservationNormalizer, RewardScaler
from trpo_lab.policies import make_policy, ValueFunction
from trpo_lab.rollout import RolloutCollector

torch.manual_seed(0)
gamma, lam, T, N, H = 0.99, 0.95, 13, 2, 5   # episodes of 5 steps, batch of 13 steps per env
kw = dict(max_episode_steps=H)
envs = make_vec_env("HalfCheetah-v5", N, kw)
pol = make_policy(envs.single_observation_space, envs.single_action_space)
critic = ValueFunction(17)
with torch.no_grad():   # a critic whose values are far from zero, so a missing bootstrap shows
    critic.net[-1].bias.fill_(3.0); critic.net[-1].weight.mul_(50)
on = ObservationNormalizer((17,)); rs = RewardScaler(N, gamma)
rng = np.random.default_rng(1)
on.update(rng.normal(0.3, 2.0, size=(500, 17)))          # non-trivial frozen statistics
rs.scale(rng.normal(0, 1, size=(7, N)), np.zeros((7, N), bool))  # and a non-trivial reward scale state
mean0, var0 = on.rms.mean.copy(), on.rms.var.copy()
rs_mean0, rs_var0, rs_count0, ret0 = rs.rms.mean, rs.rms.var, rs.rms.count, rs.ret.copy()
col = RolloutCollector(envs, pol, critic, T, gamma, lam, on, rs, seed=7)
b = col.collect()

# --- independent replay: plain gym envs with TimeLimit, same seeds, the stored (unclipped) actions clipped
acts = b.actions.numpy().reshape(T, N, -1)
norm = lambda o: np.clip((np.asarray(o, np.float32) - mean0.astype(np.float32)) / np.sqrt(var0 + 1e-8).astype(np.float32), -10, 10)
V = lambda o: float(critic(torch.from_numpy(norm(o)[None].astype(np.float32)))[0])
raw_r = np.zeros((T, N)); done = np.zeros((T, N), bool); nextv = np.zeros((T, N)); obs = np.zeros((T, N, 17))
for i in range(N):
    e = gym.make("HalfCheetah-v5", max_episode_steps=H); o, _ = e.reset(seed=7 + i)
    for t in range(T):
        obs[t, i] = o
        o2, r, term, trunc, _ = e.step(np.clip(acts[t, i], -1, 1))
        raw_r[t, i] = r; done[t, i] = term or trunc
        nextv[t, i] = 0.0 if term else V(o2)      # truncation: bootstrap from the TRUE final obs
        o = e.reset()[0] if (term or trunc) else o2
# reward scale by hand: running discounted return, reset at done, one RunningMeanStd merge of the batch
ret = ret0.copy(); rets = np.zeros((T, N))
for t in range(T):
    ret = gamma * ret + raw_r[t]; rets[t] = ret; ret = ret * (1 - done[t])
x = rets.reshape(-1); n = x.size; d = x.mean() - rs_mean0; tot = rs_count0 + n
var = (rs_var0 * rs_count0 + x.var() * n + d * d * rs_count0 * n / tot) / tot
r_s = raw_r / np.sqrt(var + 1e-8)
vals = np.array([[V(obs[t, i]) for i in range(N)] for t in range(T)])
adv = np.zeros((T, N))
for i in range(N):
    a = 0.0
    for t in reversed(range(T)):
        delta = r_s[t, i] + gamma * nextv[t, i] - vals[t, i]
        a = delta + (0.0 if done[t, i] else gamma * lam * a); adv[t, i] = a
np.testing.assert_allclose(b.obs.numpy().reshape(T, N, 17), norm(obs).astype(np.float32), rtol=1e-5, atol=1e-5)
print("max |adv - hand| =", np.abs(b.advantages.numpy().reshape(T, N) - adv).max(),
      " max |ret - hand| =", np.abs(b.returns.numpy().reshape(T, N) - (adv + vals)).max(),
      " |adv| scale =", np.abs(adv).max(), " dones at t =", np.flatnonzero(done[:, 0]).tolist())
# what a bootstrap with the RESET obs or none would give instead (to show the check is sensitive)
print("bootstrap size γV(final) at truncations:", [round(gamma * nextv[t, 0], 3) for t in np.flatnonzero(done[:, 0])])
