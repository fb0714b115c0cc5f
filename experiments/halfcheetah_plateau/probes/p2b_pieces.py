"""P2b: the pieces of the update, sb3-contrib vs trpo-lab, at the same θ on the same batch: g, F·v, CG x."""
import copy, numpy as np, torch
exec(open(__file__.replace("p2b_pieces.py", "p2_same_update.py")).read().split("theta0 = ")[0])   # same setup, stop before training
from torch.distributions import kl_divergence as _kl
from sb3_contrib.common.utils import conjugate_gradient_solver
from trpo_lab.natural.update import surrogate_of
from trpo_lab.natural.fisher import flat_grad
obs, act = b.obs, b.actions
adv = b.advantages; adv_n = (adv - adv.mean()) / (adv.std() + 1e-8)
# sb3 pieces, exactly as TRPO.train builds them
with torch.no_grad():
    old_d = copy.copy(sp.get_distribution(obs))
dist = sp.get_distribution(obs)
ratio = torch.exp(dist.log_prob(act) - b.log_prob_old)
obj = (adv_n * ratio).mean()
from stable_baselines3.common.distributions import kl_divergence
kl = kl_divergence(dist, old_d).mean()
actor_params, g_sb3, grad_kl, shapes = model._compute_actor_grad(kl, obj)
print("sb3 actor params:", [tuple(s) for s in shapes])
names = [n for n, p in sp.named_parameters() if any(p is q for q in actor_params)]
print("sb3 actor param names:", names)
g_lab = flat_grad(torch.autograd.grad(surrogate_of(pol, pol.dist_params(obs), act, b.log_prob_old, adv_n), list(pol.parameters())))
print("lab params:", [tuple(p.shape) for p in pol.parameters()])
print("g: max|g_sb3-g_lab| / max|g|:", float((g_sb3 - g_lab).abs().max() / g_lab.abs().max()),
      " log_std part sb3", g_sb3[:6].numpy().round(5), "lab", g_lab[:6].detach().numpy().round(5))
fvp_lab = AnalyticFisher().build(pol, obs, act)
hvp_sb3 = lambda v: model.hessian_vector_product(actor_params, grad_kl, v) - 0.1 * v
torch.manual_seed(1)
for name, v in [("random", torch.randn_like(g_lab)), ("e_logstd0", torch.nn.functional.one_hot(torch.tensor(0), g_lab.numel()).float()),
                ("e_bias_out0", torch.nn.functional.one_hot(torch.tensor(g_lab.numel() - 6), g_lab.numel()).float())]:
    a, c = fvp_lab(v), hvp_sb3(v).detach()
    print(f"F·v [{name}]: rel diff {float((a - c).norm() / c.norm()):.2e};  log_std part lab {a[:6].numpy().round(4)} sb3 {c[:6].numpy().round(4)}")
# CG from x0 = 0 (lab) vs sb3's x0 = 1e-4·randn, both 25 iterations on the damped system
from trpo_lab.natural.cg import ConjugateGradient
x_lab = ConjugateGradient(25, 0.1)(fvp_lab, g_lab.detach()).x
x_sb3 = conjugate_gradient_solver(lambda v: model.hessian_vector_product(actor_params, grad_kl, v), g_sb3.detach(), max_iter=25)
x_sb3_lab_fvp = conjugate_gradient_solver(lambda v: fvp_lab(v) + 0.1 * v, g_lab.detach(), max_iter=25)
cos = lambda a, b: float(a @ b / (a.norm() * b.norm()))
print("CG: cos(x_lab, x_sb3)", round(cos(x_lab, x_sb3.detach()), 5), " cos(x_lab, sb3-CG on lab F)", round(cos(x_lab, x_sb3_lab_fvp), 5),
      " |x| lab", float(x_lab.norm()), "sb3", float(x_sb3.norm()))
# exact solve of (F + 0.1 I) x = g with a dense F from lab's fvp
P = g_lab.numel(); F = torch.stack([fvp_lab(e) for e in torch.eye(P)], 1)
x_exact = torch.linalg.solve(F + 0.1 * torch.eye(P), g_lab.detach())
r = lambda x: float(((F + 0.1 * torch.eye(P)) @ x - g_lab.detach()).norm() / g_lab.norm())
print("exact: cos(x_lab, x*)", round(cos(x_lab, x_exact), 5), "cos(x_sb3, x*)", round(cos(x_sb3.detach(), x_exact), 5),
      " rel residual lab", r(x_lab), "sb3", r(x_sb3.detach()), " log_std x*", x_exact[:6].numpy().round(3),
      "lab", x_lab[:6].numpy().round(3), "sb3", x_sb3[:6].detach().numpy().round(3))
ev = torch.linalg.eigvalsh(F); print("F eigenvalues: max", float(ev.max()), "median", float(ev.median()), "#>0.1:", int((ev > 0.1).sum()), "of", P)
