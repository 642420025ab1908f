"""Golden values for the mdrec-metrics tests (run by hand; CI never runs Python).

    pip install scikit-learn scipy && python3 make_golden.py

The M3oE 2-D log_loss quirk (docs/metrics.md) needs the sklearn that M3oE used: sklearn >= 1.5
stopped row-normalising y_pred. Its section runs only under an old sklearn, e.g.

    python3 -m venv /tmp/sk121 && /tmp/sk121/bin/pip install scikit-learn==1.2.1 numpy==1.26.4 'scipy<1.14'
    /tmp/sk121/bin/python make_golden.py

Inputs come from the same 64-bit LCG and formulas as src/testutil.rs, so no input vectors are
stored. Values were produced with sklearn 1.9.1 / scipy 1.17.1 (and sklearn 1.2.1 for the 2-D
compat section).
"""
import math

import numpy as np
import sklearn
from scipy import stats
from sklearn.metrics import log_loss, roc_auc_score

M = 2**64


class Lcg:
    def __init__(self, seed):
        self.s = seed

    def next_f64(self):
        self.s = (self.s * 6364136223846793005 + 1442695040888963407) % M
        return (self.s >> 33) / float(2**31)


def round_dec(x, dec):
    m = float(10**dec)
    return math.floor(x * m + 0.5) / m


def f32(x):
    return float(np.float32(x))


def lcg_case(n, seed, p_pos, signal, dec):
    r = Lcg(seed)
    y, p = [], []
    for _ in range(n):
        u = r.next_f64()
        v = r.next_f64()
        label = 1.0 if u < p_pos else 0.0
        y.append(label)
        p.append(f32(round_dec((1.0 - signal) * v + signal * label, dec)))
    return np.array(y), np.array(p)


def lcg_grouped(n, seed, n_groups, p_pos, signal):
    r = Lcg(seed)
    y, p, g = [], [], []
    for _ in range(n):
        w = r.next_f64()
        grp = math.floor(w * n_groups)
        u = r.next_f64()
        v = r.next_f64()
        pp = p_pos if grp % 2 == 0 else p_pos / 4.0
        label = 1.0 if u < pp else 0.0
        y.append(label)
        p.append(f32(round_dec((1.0 - signal) * v + signal * label, 1)))
        g.append(grp)
    return np.array(y), np.array(p), np.array(g)


def lcg_eval_case(n, seed, n_domains, n_tasks, n_groups):
    r = Lcg(seed)
    logits, labels, domain, group = [], [], [], []
    for _ in range(n):
        d = math.floor(r.next_f64() * n_domains)
        g = math.floor(r.next_f64() * n_groups)
        domain.append(d)
        group.append(g)
        lrow, yrow = [], []
        for t in range(n_tasks):
            u = r.next_f64()
            v = r.next_f64()
            rate = 0.1 + 0.15 * t + 0.05 * d
            label = 1.0 if u < rate else 0.0
            s = 0.15 + 0.1 * d
            yrow.append(label)
            lrow.append(f32(round_dec(6.0 * ((1.0 - s) * v + s * label - 0.5), 1)))
        logits.append(lrow)
        labels.append(yrow)
    return np.array(logits), np.array(labels), np.array(domain), np.array(group)


def fuxictr_gauc(y, p, g):
    """FuxiCTR metrics.gAUC (weighted by group size, single-class groups skipped) and avgAUC."""
    num, den, aucs = 0.0, 0, []
    for key in np.unique(g):
        m = g == key
        yy = y[m]
        if 0 < yy.sum() < len(yy):
            a = roc_auc_score(yy, p[m])
            num += a * len(yy)
            den += len(yy)
            aucs.append(a)
    return (num / den if den else None), (float(np.mean(aucs)) if aucs else None), len(aucs), len(np.unique(g))


def bce_logits(y, x):
    x = np.asarray(x, dtype=np.float64)
    return float(np.mean(np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))))


print(f"# sklearn {sklearn.__version__}")
print("## auc: roc_auc_score(y, p) on lcg_case(n, seed, p_pos, signal, dec)")
for n, seed, p_pos, signal, dec in [
    (50, 1, 0.35, 0.4, 1),
    (1000, 7, 0.35, 0.4, 1),
    (333, 42, 0.35, 0.4, 1),
    (2000, 3, 0.2, 0.1, 1),
    (5000, 11, 0.05, 0.05, 2),
    (100_000, 5, 0.5, 0.02, 3),
]:
    y, p = lcg_case(n, seed, p_pos, signal, dec)
    print(f"({n}, {seed}, {p_pos}, {signal}, {dec}, {roc_auc_score(y, p)!r}),")

print("## logloss_from_probs: log_loss(y, clip(p, eps, 1 - eps)) on lcg_case(n, seed, 0.35, 0.4, 1)")
for n, seed, eps in [(50, 1, 0.05), (1000, 7, 0.05), (333, 42, 1e-7), (2000, 3, 1e-15)]:
    y, p = lcg_case(n, seed, 0.35, 0.4, 1)
    probs = np.clip(p, eps, 1.0 - eps)
    print(f"({n}, {seed}, {eps!r}, {log_loss(y, probs)!r}),")

print("## logloss_from_logits: log_loss(y, sigmoid(x)) with x = 8*(p - 0.5) as f32")
for n, seed in [(1000, 7), (2000, 3)]:
    y, p = lcg_case(n, seed, 0.35, 0.4, 2)
    x = np.array([f32(8.0 * (v - 0.5)) for v in p])
    probs = 1.0 / (1.0 + np.exp(-x))
    print(f"({n}, {seed}, {log_loss(y, probs)!r}, bce {bce_logits(y, x)!r}),")

print("## gauc (FuxiCTR gAUC / avgAUC) on lcg_grouped(n, seed, n_groups, p_pos, signal)")
for n, seed, ng, p_pos, signal in [(2000, 13, 50, 0.3, 0.2), (300, 4, 40, 0.2, 0.3)]:
    y, p, g = lcg_grouped(n, seed, ng, p_pos, signal)
    w, m, used, total = fuxictr_gauc(y, p, g)
    print(f"({n}, {seed}, {ng}, {p_pos}, {signal}, {w!r}, {m!r}, {used}, {total}),")

print("## welch: scipy.stats.ttest_ind(a, b, equal_var=False) -> (t, df, p)")
def welch(a, b):
    r = stats.ttest_ind(a, b, equal_var=False)
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return float(r.statistic), float(df), float(r.pvalue)

print("ab", welch([0.712, 0.718, 0.709, 0.721, 0.715], [0.705, 0.707, 0.701, 0.711, 0.703]))
print("cd", welch([0.5, 0.52, 0.49], [0.51, 0.50, 0.53, 0.52, 0.50, 0.49]))
r = Lcg(99)
e = [r.next_f64() for _ in range(30)]
f = [r.next_f64() * 0.5 + 0.6 for _ in range(40)]
print("ef (lcg 99: 30 draws, then 40 draws*0.5+0.6)", welch(e, f))
print("gh", welch([1.0, 2.0], [1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.1, 2.2, 2.3, 2.4]))

print("## eval report: lcg_eval_case(3000, 21, 3, 2, 200)")
X, Y, D, G = lcg_eval_case(3000, 21, 3, 2, 200)
cells = {}
for d in range(3):
    for t in range(2):
        m = D == d
        a = roc_auc_score(Y[m, t], X[m, t])
        gw, gm, _, _ = fuxictr_gauc(Y[m, t], X[m, t], G[m])
        ll = bce_logits(Y[m, t], X[m, t])
        cells[(d, t)] = a
        print(f"cell d={d} t={t}: n={m.sum()} pos={int(Y[m, t].sum())} auc={a!r} gauc={gw!r} gauc_mean={gm!r} logloss={ll!r}")
task_auc = []
task_gauc = []
for t in range(2):
    a = roc_auc_score(Y[:, t], X[:, t])
    gw, _, _, _ = fuxictr_gauc(Y[:, t], X[:, t], G)
    task_auc.append(a)
    task_gauc.append(gw)
    print(f"task t={t}: auc={a!r} gauc={gw!r} logloss={bce_logits(Y[:, t], X[:, t])!r}")
print(f"sklearn 2-D macro roc_auc_score(Y, X) = {roc_auc_score(Y, X)!r} (= auc_task_pooled_mean)")
print(f"auc_mean_cells={np.mean(list(cells.values()))!r}")
print(f"gauc_task_mean={np.mean(task_gauc)!r}")
print(f"logloss(all pairs)={bce_logits(Y.ravel(), X.ravel())!r}")
w = np.array([5.0, 3.0, 2.0])
dauc = np.mean([sum(w[d] * cells[(d, t)] for d in range(3)) / w.sum() for t in range(2)])
print(f"domain_auc(train counts 5,3,2)={dauc!r}")

major, minor = sklearn.__version__.split(".")[:2]
if (int(major), int(minor)) < (1, 5):
    print("## sklearn_2d_logloss_compat: log_loss(Y, P) on 2-D inputs (row-normalised)")
    P = 1.0 / (1.0 + np.exp(-X.astype(np.float32)))  # f32 sigmoid, then promoted
    P = np.array([[f32(v) for v in row] for row in P]).astype(np.float64)
    print(f"lcg_eval_case(3000,21,3,2,200), P = f32 sigmoid(X): {log_loss(Y, P)!r}")
    print(f"small: {log_loss([[1, 0], [0, 1], [1, 1]], [[0.8, 0.3], [0.4, 0.6], [0.9, 0.7]])!r}")
else:
    print("## sklearn_2d_logloss_compat: skipped (needs sklearn < 1.5, see docstring)")
