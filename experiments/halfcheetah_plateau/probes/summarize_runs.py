"""Summarise the 200k-step probe runs (A: δ=0.04 λ=0.1, B: δ=0.24 λ=0.6; both at the sb3 layout)."""
import json, sys, glob, os, numpy as np
for d in sorted(glob.glob(sys.argv[1] + "/[AB]_s*/")):
    if not os.path.exists(d + "summary.json"): continue
    rows = [json.loads(l) for l in open(d + "metrics.jsonl")]; s = json.load(open(d + "summary.json"))
    # a batch's own episode mean: `return/batch_mean` since 7215cd2, when `return/mean` became the 10-episode window
    batch = lambda r: r.get("return/batch_mean", r["return/mean"])
    def ep_mean(lo, hi):  # mean return of the episodes that ended in env steps (lo, hi], weighted by episode count
        sel = [(batch(r), r["return/episodes"]) for r in rows if lo < r["env_steps"] <= hi and r["return/episodes"]]
        return sum(a * n for a, n in sel) / max(1, sum(n for _, n in sel))
    last = rows[-10:]; f = lambda k: float(np.nanmean([r[k] for r in last]))
    std_at = {k: round(next(r["policy/std_mean"] for r in rows if r["env_steps"] >= k), 3) for k in (43008, 83968, 124928, 165888)}
    print(f"{os.path.basename(d[:-1])}: ep-return 0-100k {ep_mean(0, 1e5):7.1f}  100k-200k {ep_mean(1e5, 2.1e5):7.1f}  max batch {max(batch(r) for r in rows if r['return/episodes']):7.1f}"
          f"  eval5 {s['final_eval']['return_mean']:7.1f}  std_end {rows[-1]['policy/std_mean']:.3f} std_at {std_at}  KL/step {f('step/kl_mean'):.4f}  EV {f('critic/explained_variance'):.2f}")
