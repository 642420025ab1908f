"""Shared parts of the PyTorch twins of `mdrec speed` (see README.md in this folder).

A twin is a PyTorch program with the same layers, optimizers, batch size, loss and data as one
`mdrec speed` workload, so that the two can be timed side by side on the same machine. This
module holds everything the twins share: the layer set (MLP, softmax gate, expert mixing,
towers, per-domain row routing), the loss, the optimizers, the MovieLens-1M reader and the
one timing loop, which measures what `mdrec speed` measures:

- training: `--warmup` untimed steps, then `--steps` timed steps over full batches of a seeded
  shuffle of the training rows (cycled when there are fewer batches than steps);
  train samples/s = steps * batch / wall time;
- cores busy while training: process CPU time (user + sys, all threads) / wall time;
- inference: logits of the first min(n, 200,000) rows in row order at batch 8192 under
  `torch.inference_mode()`, copied to a NumPy array.

The result is printed as a human line and as one machine-readable line:
`TWIN workload=<name> batch=<b> threads=<t> train=<samples/s> cores=<busy> infer=<samples/s>`.
"""

import argparse
import os
import sys
import time

INSTALL_HINT = """PyTorch is not installed for {python}.
Install it with
    {python} -m pip install torch
or, CPU-only (a smaller download):
    {python} -m pip install torch --index-url https://download.pytorch.org/whl/cpu
then run again (or point PYTHON at an interpreter that has torch)."""

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:
    print(INSTALL_HINT.format(python=sys.executable), file=sys.stderr)
    sys.exit(3)

INFER_ROWS = 200_000
INFER_BATCH = 8192


# ---------------------------------------------------------------------------------------------
# Layers (mdrec-nn `layers.rs`, mdrec-models `blocks/`)
# ---------------------------------------------------------------------------------------------


class MLP(nn.Module):
    """Hidden layers `Linear -> [BatchNorm | LayerNorm] -> ReLU -> [Dropout]` (mdrec `Mlp`), no
    output layer."""

    def __init__(self, in_dim, dims, layer_norm=False, batch_norm=False, dropout=0.0):
        super().__init__()
        layers = []
        for d in dims:
            layers.append(nn.Linear(in_dim, d))
            if batch_norm:
                layers.append(nn.BatchNorm1d(d))
            if layer_norm:
                layers.append(nn.LayerNorm(d))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_dim = d
        self.net = nn.Sequential(*layers)
        self.out_dim = in_dim

    def forward(self, x):
        return self.net(x)


class Gate(nn.Module):
    """`softmax(Linear(x))` over `n` experts (mdrec `Gate`, kind `linear`)."""

    def __init__(self, in_dim, n):
        super().__init__()
        self.linear = nn.Linear(in_dim, n)

    def forward(self, x):
        return torch.softmax(self.linear(x), dim=1)


def mix(experts, gate):
    """`[N, E, H]` experts mixed by a `[N, E]` gate -> `[N, H]` (mdrec `layers::mix`)."""
    return torch.bmm(gate.unsqueeze(1), experts).squeeze(1)


class Tower(nn.Module):
    """Hidden MLP then `Linear(h, 1)` (mdrec `blocks::heads::Tower`)."""

    def __init__(self, in_dim, dims, layer_norm=False):
        super().__init__()
        self.mlp = MLP(in_dim, dims, layer_norm)
        self.out = nn.Linear(self.mlp.out_dim, 1)

    def forward(self, x):
        return self.out(self.mlp(x))


class Routing:
    """The rows of each domain of a batch (mdrec `ModelInput::rows_of` / `route`): per-domain
    parts run on their domain's rows only and are put back in batch order."""

    def __init__(self, domain, n_domains):
        self.batch_size = domain.shape[0]
        self.counts = torch.bincount(domain, minlength=n_domains).tolist()
        self.rows = [
            (domain == d).nonzero().squeeze(1) if c > 0 else None
            for d, c in enumerate(self.counts)
        ]
        present = [r for r in self.rows if r is not None]
        if len(present) == 1:
            self.inv = None
        else:
            order = torch.cat(present)
            self.inv = torch.empty_like(order)
            self.inv[order] = torch.arange(order.shape[0])

    def rows_of(self, x, d):
        if self.counts[d] == self.batch_size:
            return x
        return x.index_select(0, self.rows[d])

    def route(self, f):
        parts = [f(d) for d, c in enumerate(self.counts) if c > 0]
        joined = parts[0] if len(parts) == 1 else torch.cat(parts, 0)
        return joined if self.inv is None else joined.index_select(0, self.inv)


class DomainTaskHeads(nn.Module):
    """One tower per (domain, task), each on its domain's rows (mdrec `Heads`, `domain_task`)."""

    def __init__(self, n_domains, n_tasks, in_dim, dims, layer_norm=False):
        super().__init__()
        self.n_tasks = n_tasks
        self.towers = nn.ModuleList(
            Tower(in_dim, dims, layer_norm) for _ in range(n_domains * n_tasks)
        )

    def forward(self, routing, x):
        """`x(d, t)` gives the tower input of head (d, t) on domain d's rows."""
        t_n = self.n_tasks
        return routing.route(
            lambda d: torch.cat(
                [self.towers[d * t_n + t](x(d, t)) for t in range(t_n)], 1
            )
        )


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


class Data:
    """Encoded rows: `cat` `[n, F]` int64 ids (already offset into one concatenated table),
    `num` `[n, K]` float32 or None, `domain` `[n]` int64, `labels` `[n, T]` float32, and the
    vocabulary size of each categorical field."""

    def __init__(self, cat, num, domain, labels, vocab, n_domains, source):
        self.cat = cat
        self.num = num
        self.domain = domain
        self.labels = labels
        self.vocab = vocab
        self.n_domains = n_domains
        self.n_tasks = labels.shape[1]
        self.source = source

    def __len__(self):
        return self.cat.shape[0]


def offset_ids(columns, vocab):
    """Per-field ids -> ids into one table holding every field's rows one after the other."""
    offsets = np.concatenate([[0], np.cumsum(vocab)[:-1]]).astype(np.int64)
    return torch.from_numpy(np.stack(columns, 1).astype(np.int64) + offsets)


def read_dat(path, n_cols):
    with open(path, encoding="latin-1") as f:
        rows = [line.rstrip("\n").split("::") for line in f if line.strip()]
    bad = [i for i, r in enumerate(rows) if len(r) != n_cols]
    if bad:
        sys.exit(f"{path}:{bad[0] + 1}: expected {n_cols} `::`-separated fields")
    return rows


def first_appearance_rank(keys):
    """Rank of each key's first appearance in `keys`, per row."""
    uniq, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
    return rank[inv]


def encode(values):
    """mdrec's vocabulary ids: 0 = PAD, 1 = OOV, kept values sorted from id 2 (train rows)."""
    uniq, inv = np.unique(values, return_inverse=True)
    return inv.astype(np.int64) + 2, len(uniq) + 2


def movielens_1m(folder):
    """MovieLens-1M as mdrec's `movielens-1m` recipe gives its training split: the rows in the
    M3oE "merged" order (grouped by movie in order of first appearance in ratings.dat, then
    grouped by user in order of first appearance in that sequence), the first 80 % (split
    `m3oe`); fields user_id, movie_id, gender, occupation, zip, genre (first genre),
    domain_indicator (categorical) and age (numeric, min-max); domains from the age code
    ({1, 18}, {25}, {35, 45, 50, 56}); tasks click = rating > 3, like = rating > 4."""
    for name in ("ratings.dat", "users.dat", "movies.dat"):
        if not os.path.isfile(os.path.join(folder, name)):
            sys.exit(
                f"{os.path.join(folder, name)} not found: set ML1M_DIR (or --data-dir) to the "
                "unzipped ml-1m folder from https://grouplens.org/datasets/movielens/1m/"
            )
    ratings = np.array(read_dat(os.path.join(folder, "ratings.dat"), 4), dtype=np.int64)
    users = {int(r[0]): r[1:] for r in read_dat(os.path.join(folder, "users.dat"), 5)}
    movies = {
        int(r[0]): r[2].split("|")[0] for r in read_dat(os.path.join(folder, "movies.dat"), 3)
    }
    user, movie, rating = ratings[:, 0], ratings[:, 1], ratings[:, 2]
    by_movie = np.argsort(first_appearance_rank(movie), kind="stable")
    merged = by_movie[np.argsort(first_appearance_rank(user[by_movie]), kind="stable")]
    train = merged[: int(np.floor(0.8 * len(merged)))]
    user, movie, rating = user[train], movie[train], rating[train]
    uinfo = np.array([users[u] for u in user.tolist()], dtype=object)
    gender, age, occupation, zipcode = (uinfo[:, k].astype(str) for k in range(4))
    genre = np.array([movies[m] for m in movie.tolist()])
    age = age.astype(np.int64)
    domain = np.where(np.isin(age, [1, 18]), 0, np.where(age == 25, 1, 2)).astype(np.int64)
    cols, vocab = [], []
    for values in (user, movie, gender, occupation, zipcode, genre, domain):
        ids, v = encode(values)
        cols.append(ids)
        vocab.append(v)
    age_f = age.astype(np.float32)
    num = (age_f - age_f.min()) / max(age_f.max() - age_f.min(), 1e-12)
    labels = np.stack([rating > 3, rating > 4], 1).astype(np.float32)
    return Data(
        offset_ids(cols, vocab),
        torch.from_numpy(num[:, None].copy()),
        torch.from_numpy(domain),
        torch.from_numpy(labels),
        vocab,
        3,
        f"movielens-1m ({folder}), merged row order, train split",
    )


# ---------------------------------------------------------------------------------------------
# Embeddings, loss, optimizers
# ---------------------------------------------------------------------------------------------


class Embeddings(nn.Module):
    """Every categorical field's table as one `nn.Embedding` (rows of field f after those of
    fields < f), rows ~ N(0, 1e-4^2) like mdrec's `init_std`. `sparse=True` gives row-sparse
    gradients (SparseAdam), `False` dense ones (dense Adam on every row)."""

    def __init__(self, vocab, dim, sparse):
        super().__init__()
        self.table = nn.Embedding(int(sum(vocab)), dim, sparse=sparse)
        nn.init.normal_(self.table.weight, std=1e-4)

    def forward(self, ids):
        return self.table(ids).flatten(1)


def cell_mean_weights(domain, n_domains, n_tasks):
    """mdrec's default loss reduction `cell_mean_sum`: element weight 1 / (rows of its domain)."""
    counts = torch.bincount(domain, minlength=n_domains).clamp_min(1).float()
    return (1.0 / counts)[domain].unsqueeze(1).expand(-1, n_tasks)


class Optimizers:
    """Dense Adam (L2 weight decay added to the gradient, as burn's and torch's Adam do) on the
    network; the embedding table either in the same dense Adam (`adam_dense`) or in SparseAdam
    on the touched rows with the weight decay added to those rows' gradients (`adam`, mdrec's
    default `EmbeddingStore` update)."""

    def __init__(self, model, emb, emb_optimizer, lr, weight_decay, eps, adam_impl):
        self.emb, self.wd = emb, weight_decay
        dense = [p for p in model.parameters() if p.requires_grad]
        kw = {}
        if adam_impl == "foreach":
            kw["foreach"] = True
        elif adam_impl == "fused":
            kw["fused"] = True
        if emb_optimizer == "adam_dense":
            dense = list(emb.parameters()) + dense
            self.sparse = None
        else:
            self.sparse = torch.optim.SparseAdam(list(emb.parameters()), lr=lr, eps=eps)
        self.dense = torch.optim.Adam(dense, lr=lr, eps=eps, weight_decay=weight_decay, **kw)

    def zero_grad(self):
        self.dense.zero_grad(set_to_none=True)
        if self.sparse is not None:
            self.sparse.zero_grad(set_to_none=True)

    def step(self):
        if self.sparse is not None:
            w = self.emb.table.weight
            g = w.grad.coalesce()
            idx = g.indices()
            vals = g.values() + self.wd * w.detach().index_select(0, idx[0])
            w.grad = torch.sparse_coo_tensor(
                idx, vals, g.shape, is_coalesced=True, check_invariants=False
            )
            self.sparse.step()
        self.dense.step()


# ---------------------------------------------------------------------------------------------
# The timing loop
# ---------------------------------------------------------------------------------------------


def parser(description, batch_size):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--steps", type=int, default=60, help="timed training steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up steps")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=2022)
    p.add_argument(
        "--adam",
        choices=["default", "foreach", "fused"],
        default="default",
        help="torch.optim.Adam implementation (default: what Adam(params) picks on CPU)",
    )
    p.add_argument(
        "--loss-every", type=int, default=0, help="print the training loss every K steps (0: never)"
    )
    return p


def run(key, label, data, model, input_of, args, lr, emb_optimizer, weight_decay=1e-5, eps=1e-8):
    """Train `model` on `data` for warmup + steps batches, then infer; print the figures.

    `input_of(rows)` returns the model's input for those rows (embedding lookup included);
    `model(x, routing)` returns logits `[B, T]`."""
    bs = args.batch_size
    n_batches = len(data) // bs
    if n_batches == 0:
        sys.exit(f"not enough rows ({len(data)}) for one batch of {bs}")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(args.seed))
    batches = [order[i * bs : (i + 1) * bs] for i in range(n_batches)]
    emb = model.emb
    opt = Optimizers(model.net, emb, emb_optimizer, lr, weight_decay, eps, args.adam)

    n_step = [0]

    def step(rows):
        domain = data.domain.index_select(0, rows)
        labels = data.labels.index_select(0, rows)
        opt.zero_grad()
        logits = model.net(input_of(rows), Routing(domain, data.n_domains))
        w = cell_mean_weights(domain, data.n_domains, data.n_tasks)
        loss = F.binary_cross_entropy_with_logits(logits, labels, weight=w, reduction="sum")
        loss.backward()
        opt.step()
        value = loss.item()
        if not np.isfinite(value):
            sys.exit(f"loss is {value} at a training step")
        n_step[0] += 1
        if args.loss_every and n_step[0] % args.loss_every == 0:
            print(f"step {n_step[0]}: loss {value:.5f}", file=sys.stderr)

    model.train()
    for i in range(args.warmup):
        step(batches[i % n_batches])
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(args.steps):
        step(batches[(args.warmup + i) % n_batches])
    wall = time.perf_counter() - t0
    train = args.steps * bs / wall
    cores = (time.process_time() - c0) / wall

    model.eval()
    n_inf = min(len(data), INFER_ROWS)
    out = np.empty((n_inf, data.n_tasks), dtype=np.float32)
    t1 = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, n_inf, INFER_BATCH):
            rows = torch.arange(start, min(start + INFER_BATCH, n_inf))
            routing = Routing(data.domain.index_select(0, rows), data.n_domains)
            out[start : start + rows.shape[0]] = model.net(input_of(rows), routing).numpy()
    infer = n_inf / (time.perf_counter() - t1)

    print(
        f"| {label} (PyTorch {torch.__version__}) on {data.source} | {bs} | "
        f"{torch.get_num_threads()} | {train:.0f} | {cores:.2f} | {infer:.0f} |"
    )
    print(
        f"TWIN workload={key} batch={bs} threads={torch.get_num_threads()} "
        f"train={train:.1f} cores={cores:.3f} infer={infer:.1f}"
    )


class Twin:
    """A twin's network (`net(x, routing)`) and its embedding tables (`emb`)."""

    def __init__(self, net, emb):
        self.net, self.emb = net, emb

    def train(self):
        self.net.train()
        self.emb.train()

    def eval(self):
        self.net.eval()
        self.emb.eval()


def setup(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
