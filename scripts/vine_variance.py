r"""The TRPO paper's vine claim, measured: the variance of the surrogate gradient g = ∇_θ L(θ_old) of vine against
single path, over repeated batches at the same simulator budget, for one fixed policy.

    python scripts/vine_variance.py env=cartpole --reps 30
    python scripts/vine_variance.py env=inverted_pendulum sampling.states=100 --reps 30

Arguments after the options are Hydra overrides of conf/train.yaml (``sampling.*`` set the vine sampler; the
single-path batch is GAE(γ, rollout.gae_lambda) with the critic). Method: the policy is π_0 (the seed's
initial network) after the normaliser warm-up; the observation normaliser and reward scaler are reset to that
state before every batch, so every batch is drawn from the same π_old. Vine runs first; single path then collects
batches of the vine batches' mean simulator steps (trunk + branches), rounded to a multiple of the env count.
Both gradients are in raw units (no standardisation: single path Â, vine Q̂ centred per state). They estimate
different horizons (GAE vs a T_b-step Q̂), so the scale-free number is the **relative variance**
tr Cov(g) / ‖E g‖²; its ratio vine / single path is printed last (< 1: vine has the lower variance), at the same
simulator budget (the issue's question). The paper's own framing is "the same number of Q-value samples": the
relative variance times the Q-values per batch (N·K for vine, every sample for single path), the variance of one
Q-value's share of g if samples were independent; that ratio is printed too.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trpo_lab import CONFIG_DIR  # noqa: E402
from trpo_lab.envs import RewardScaler, make_vec_env  # noqa: E402
from trpo_lab.natural.fisher import flat_grad  # noqa: E402
from trpo_lab.natural.surrogate import SinglePathSurrogate  # noqa: E402
from trpo_lab.policies import ValueFunction  # noqa: E402
from trpo_lab.rollout import RolloutCollector  # noqa: E402
from trpo_lab.train import build_policy  # noqa: E402
from trpo_lab.vine import VineCollector  # noqa: E402


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("train", overrides=["sampling=vine", *overrides])


def gradient_stats(grads: list[torch.Tensor]) -> dict[str, float]:
    g = torch.stack(grads).double()
    mean = g.mean(0)
    tr_cov = float(g.var(0, unbiased=True).sum())
    return {"tr_cov": tr_cov, "mean_sq": float(mean @ mean), "rel_var": tr_cov / float(mean @ mean)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=30, help="batches per sampler")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. env=cartpole")
    args = ap.parse_args()
    cfg = compose(args.overrides)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(1)
    r = cfg.rollout
    envs = make_vec_env(cfg.env.id, r.num_envs, dict(cfg.env.kwargs))
    policy, obs_norm = build_policy(cfg, envs.single_observation_space, envs.single_action_space)
    critic = ValueFunction(envs.single_observation_space.shape[0], cfg.critic.hidden_sizes, cfg.critic.activation)
    scaler = RewardScaler(r.num_envs, r.gamma, enabled=r.normalize_reward)
    space = envs.single_action_space
    k = int(space.n) if hasattr(space, "n") else cfg.sampling.actions_per_state
    common = dict(gamma=r.gamma, gae_lambda=r.gae_lambda, obs_normalizer=obs_norm, reward_scaler=scaler, seed=cfg.seed)
    s = cfg.sampling
    vine = VineCollector(envs, policy, critic, steps_per_env=r.batch_size // r.num_envs, **common,
                         branch_envs=make_vec_env(cfg.env.id, k, dict(cfg.env.kwargs)), states=s.states,
                         actions_per_state=s.actions_per_state, branch_length=s.branch_length,
                         bootstrap=s.bootstrap, baseline=s.baseline, normalize=False)
    vine.warm_up(r.normalizer_warmup)
    frozen = (copy.deepcopy(obs_norm.__dict__), copy.deepcopy(scaler.__dict__))

    def freeze() -> None:  # every batch from the same π_old, normalised the same way
        obs_norm.__dict__.update(copy.deepcopy(frozen[0]))
        scaler.__dict__.update(copy.deepcopy(frozen[1]))

    def grad(surrogate) -> torch.Tensor:
        value = surrogate.value(policy, policy.dist_params(surrogate.obs))
        return flat_grad(torch.autograd.grad(value, list(policy.parameters())))

    g_vine, steps, n_q = [], [], 0
    for _ in range(args.reps):
        freeze()
        b = vine.collect()
        g_vine.append(grad(b.surrogate))
        n_q = b.surrogate.raw.numel()
        steps.append(b.env_steps)
    budget = int(np.mean(steps))
    per_env = max(1, round(budget / r.num_envs))
    single = RolloutCollector(envs, policy, critic, steps_per_env=per_env, **common)
    single.raw_obs = vine.raw_obs
    g_single = []
    for _ in range(args.reps):
        freeze()
        b = single.collect()
        g_single.append(grad(SinglePathSurrogate(b.obs, b.actions, b.log_prob_old, b.advantages, normalize=False)))
    sv, ss = gradient_stats(g_vine), gradient_stats(g_single)
    cos = float(torch.nn.functional.cosine_similarity(torch.stack(g_vine).mean(0), torch.stack(g_single).mean(0), 0))
    print(f"{cfg.env.id}: {args.reps} batches each; vine {budget} env steps/batch (trunk {r.batch_size} + branches, "
          f"N={s.states}, K={k}, T_b={s.branch_length}); single path {per_env * r.num_envs} env steps/batch")
    for name, st in (("vine", sv), ("single path", ss)):
        print(f"  {name:12s} tr Cov(g) = {st['tr_cov']:.4g}   ‖E g‖² = {st['mean_sq']:.4g}   relative variance = {st['rel_var']:.4g}")
    print(f"  cosine(E g_vine, E g_single) = {cos:.3f}")
    n_single = per_env * r.num_envs
    print(f"  per Q-value sample (× Q-values per batch: vine {n_q}, single path {n_single}): "
          f"ratio vine / single path = {sv['rel_var'] * n_q / (ss['rel_var'] * n_single):.4g}")
    print(f"relative-variance ratio vine / single path = {sv['rel_var'] / ss['rel_var']:.4g}")
    vine.close()


if __name__ == "__main__":
    main()
