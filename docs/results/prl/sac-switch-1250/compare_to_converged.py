"""SAC on yoochoose-100k with the switch at 1,250 vs the converged PRL run's CE / SQN / SAC (switch 250, a9fabd4)."""
import json, sys
import numpy as np
from scipy import stats

from recgym.experiments.report import holm

r = json.load(open("docs/results/prl/converged-yoochoose/results.json"))
seeds = r["seeds"]
old = {}
for s, rows in zip(seeds, r["encoders"]["yoochoose-100k"]):
    for x in rows:
        old[(x["encoder"], x["method"], s)] = x["ndcg@20_click"]
M = "ndcg@20_click"
out, tests = [], {}
for enc in ("sasrec", "gru", "caser", "nextitnet"):
    new, post, steps, vers = [], 0, [], set()
    for s in seeds:
        j = json.load(open(f"runs/sac_switch/{enc}-1250/jobs/sac/seed{s}/results.json"))
        new.append(j["test"][M]); steps.append(j["best_step"]); post += j["best_step"] > 1250; vers.add(j.get("code_version"))
    new = np.array(new)
    ce = np.array([old[(enc, "CE", s)] for s in seeds]); sqn = np.array([old[(enc, "SQN", s)] for s in seeds])
    sac = np.array([old[(enc, "SAC", s)] for s in seeds])
    row = dict(enc=enc, ce=ce, sqn=sqn, sac250=sac, sac1250=new, post=post, steps=steps, vers=vers)
    for name, base in (("ce", ce), ("sqn", sqn), ("sac250", sac)):
        d = new - base
        row[f"d_{name}"] = (d.mean(), int((d > 0).sum()), stats.ttest_rel(new, base).pvalue)
    out.append(row)
for name in ("ce", "sqn", "sac250"):
    ps = holm({r_["enc"]: r_[f"d_{name}"][2] for r_ in out})
    for r_ in out:
        r_[f"h_{name}"] = ps[r_["enc"]]
print("| encoder | CE | SQN | SAC, switch 250 | SAC, switch 1,250 | kept after the switch | Δ vs CE (Holm p; seeds higher) | Δ vs SQN (Holm p) | Δ vs SAC 250 (Holm p) |")
print("|---|---:|---:|---:|---:|---:|---|---|---|")
f = lambda a: f"{a.mean():.4f} ± {a.std(ddof=1):.4f}"
for x in out:
    print(f"| {x['enc']} | {f(x['ce'])} | {f(x['sqn'])} | {f(x['sac250'])} | {f(x['sac1250'])} | {x['post']}/5 | "
          f"{x['d_ce'][0]:+.4f} ({x['h_ce']:.2g}; {x['d_ce'][1]}/5) | {x['d_sqn'][0]:+.4f} ({x['h_sqn']:.2g}; {x['d_sqn'][1]}/5) | "
          f"{x['d_sac250'][0]:+.4f} ({x['h_sac250']:.2g}; {x['d_sac250'][1]}/5) |")
for x in out:
    print(x["enc"], "best steps", x["steps"], "versions", x["vers"])
