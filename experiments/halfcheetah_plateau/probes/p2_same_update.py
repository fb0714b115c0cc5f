"""P2: one TRPO policy update, trpo-lab vs sb3-contrib TRPO.train(), same batch, same initial weights.
Batch: 2 envs x 1024 steps of HalfCheetah-v5 collected by trpo-lab (normalisation and scaling on).
sb3-contrib settings as the bench: CG 25, damping 0.1, target_kl 0.04, line search 0.8 x 10."""
import sys, copy, numpy as np, torch
from trpo_lab.envs import make_vec_env, ObservationNormalizer, RewardScaler
from trpo_lab.policies import make_policy, ValueFunction
from trpo_lab.rollout import RolloutCollector
from trpo_lab.natural.update import NaturalGradientUpdate
from trpo_lab.natural.fisher import AnalyticFisher
from trpo_lab.natural.cg import ConjugateGradient
from trpo_lab.natural.step_rules import KLScaledStep
from trpo_lab.natural.line_search import BacktrackingLineSearch
from sb3_contrib import TRPO
from stable_baselines3.common.env_util import make_vec_env as sb3_make
from stable_baselines3.common.vec_env import DummyVecEnv
from stable_baselines3.common.logger import configure

torch.set_num_threads(1); torch.manual_seed(0)
N, T, delta = 2, 1024, 0.04
envs = make_vec_env("HalfCheetah-v5", N)
pol = make_policy(envs.single_observation_space, envs.single_action_space)
critic = ValueFunction(17)
on, rs = ObservationNormalizer((17,)), RewardScaler(N, 0.99)
col = RolloutCollector(envs, pol, critic, T, 0.99, 0.95, on, rs, seed=0)
col.warm_up(2048)
batches = [col.collect() for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1)]
b = batches[-1]
if len(sys.argv) > 2:  # perturb π so that the step is not the first one from the 0.01-gain init
    with torch.no_grad():
        for p in pol.parameters(): p.add_(0.3 * torch.randn_like(p) * p.std().clamp_min(0.1))
    with torch.no_grad():
        b.log_prob_old = pol.log_prob(pol.dist_params(b.obs), b.actions)

model = TRPO("MlpPolicy", DummyVecEnv([lambda: __import__("gymnasium").make("HalfCheetah-v5")] * N), n_steps=T,
             batch_size=128, cg_max_steps=25, cg_damping=0.1, n_critic_updates=20, target_kl=delta, device="cpu", seed=0)
model.set_logger(configure(None, []))
sp = model.policy
with torch.no_grad():   # copy trpo-lab's actor into sb3's
    lin = [m for m in pol.mean_net if isinstance(m, torch.nn.Linear)]
    sp.mlp_extractor.policy_net[0].weight.copy_(lin[0].weight); sp.mlp_extractor.policy_net[0].bias.copy_(lin[0].bias)
    sp.mlp_extractor.policy_net[2].weight.copy_(lin[1].weight); sp.mlp_extractor.policy_net[2].bias.copy_(lin[1].bias)
    sp.action_net.weight.copy_(lin[2].weight); sp.action_net.bias.copy_(lin[2].bias); sp.log_std.copy_(pol.log_std)
buf = model.rollout_buffer
buf.reset()
buf.observations[:] = b.obs.numpy().reshape(T, N, 17); buf.actions[:] = b.actions.numpy().reshape(T, N, 6)
buf.advantages[:] = b.advantages.numpy().reshape(T, N); buf.returns[:] = b.returns.numpy().reshape(T, N)
buf.values[:] = b.values.numpy().reshape(T, N); buf.log_probs[:] = b.log_prob_old.numpy().reshape(T, N)
buf.full, buf.generator_ready = True, False
with torch.no_grad():
    d_sb3 = sp.get_distribution(b.obs); lp = d_sb3.log_prob(b.actions)
print("log_prob_old max diff (sb3 vs lab):", float((lp - b.log_prob_old).abs().max()))
assert [n for n, _ in pol.named_parameters()][0] == 'log_std'
theta0 = torch.cat([p.detach().reshape(-1) for p in pol.parameters()])
model.train()
theta_sb3 = torch.cat([t.detach().reshape(-1) for t in (sp.log_std, sp.mlp_extractor.policy_net[0].weight, sp.mlp_extractor.policy_net[0].bias,
    sp.mlp_extractor.policy_net[2].weight, sp.mlp_extractor.policy_net[2].bias, sp.action_net.weight, sp.action_net.bias)])
print("sb3: line search ok", model.logger.name_to_value.get("train/is_line_search_success"),
      "kl", model.logger.name_to_value.get("train/kl_divergence_loss"))
k = 6  # action dims: sb3-contrib averages the KL over them
for direction, dl, lam in (("new_old", delta, 0.1), ("old_new", delta, 0.1), ("new_old", k * delta, k * 0.1), ("old_new", k * delta, k * 0.1)):
    p2 = copy.deepcopy(pol)
    upd = NaturalGradientUpdate(AnalyticFisher(), ConjugateGradient(25, lam), KLScaledStep(dl), BacktrackingLineSearch(dl),
                                max_kl=dl, kl_direction=direction)
    st = upd(p2, b.obs, b.actions, b.log_prob_old, b.advantages)
    th = torch.cat([p.detach().reshape(-1) for p in p2.parameters()])
    d_lab, d_sb3 = th - theta0, theta_sb3 - theta0
    cos = float(d_lab @ d_sb3 / (d_lab.norm() * d_sb3.norm()))
    print(f"lab[{direction} δ={dl:.2f} λ={lam:.1f}]: fraction {st.fraction:.3f} kl {st.kl_mean:.4f} |Δ| {float(d_lab.norm()):.4f}; sb3 |Δ| {float(d_sb3.norm()):.4f};"
          f" cos(Δlab, Δsb3) {cos:.5f}; rel diff {float((d_lab - d_sb3).norm() / d_sb3.norm()):.2e}; "
          f"Δlog_std lab {d_lab[:6].numpy().round(4)} sb3 {d_sb3[:6].numpy().round(4)}")
