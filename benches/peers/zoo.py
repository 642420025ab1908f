"""PyTorch twins of zoo models at mdrec's default configs on MovieLens-1M, timed like
`mdrec speed --workload dataset --model <name>` (batch 1024, mdrec's default training config).

Data: the MovieLens-1M training split as mdrec's `movielens-1m` recipe gives it (see
`twin.movielens_1m`), read from `--data-dir` / `$ML1M_DIR`; input x = 7 categorical embeddings
x 16 + the numeric age = 113; 3 age domains, 2 tasks (click, like).

Training: mdrec's defaults: Adam (lr 1e-3, eps 1e-8, weight decay 1e-5) on the dense network;
embedding rows sparse (`nn.Embedding(sparse=True)`) with SparseAdam (lr 1e-3) on the touched
rows, the weight decay added to those rows' gradients; loss BCE with logits reduced by
`cell_mean_sum`.

Models (one registry entry each; the training and timing loop is `twin.run`):
- `ple` (mdrec `multitask::ple` defaults): one CGC level, a head per (domain, task) (6 heads),
  one specific expert per head on its domain's rows, 2 shared experts on every row, experts
  MLP 113 -> 64 -> 32 (Linear + ReLU), a softmax(Linear(113, 3)) gate per head on its domain's
  rows over [specific, shared...], a tower 32 -> 16 -> 1 per head.
- `star` (mdrec `multidomain::star` defaults): per domain on its rows, partitioned normalization
  (per-domain batch statistics in training, per-domain moving averages with momentum 0.1 at
  inference, affine (gamma * gamma_d, beta + beta_d)), a star FCN 113 -> 256 -> 128 -> 64 -> 2
  with weights W_shared * W_d and biases b_shared + b_d (ReLU between hidden layers, none on the
  output), plus an auxiliary MLP on the domain-indicator embedding 16 -> 32 -> 2 added to the
  logits.
- `aread` (mdrec `multidomain::aread` defaults, as `mdrec speed` trains it: the HEMP schedule
  is the trainer's and does not run, so no domain has a mask and the HEI runs once over the
  whole batch): 4 MMoE experts 113 -> 256 -> 128 -> 64 and 3 softmax gates feeding the 3
  level-1 experts 64 -> 64 -> 32; 6 level-2 experts 32 -> 32 -> 16 and 12 level-3 experts
  16 -> 16 -> 8, each with a softmax(Linear(32 -> N_prev)) gate on [domain embedding ; 0];
  every expert layer Linear -> BatchNorm -> ReLU -> Dropout(0.2); a DCN-v1 cross network (3
  layers) on x; 12 outputs Linear([cross ; expert] -> 2, no bias) + Linear(x -> 2); the logit
  of the mean of the 12 sigmoids.

    python3 benches/peers/zoo.py --model ple --data-dir ml-1m [--steps 60 --warmup 5]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import twin  # noqa: E402
from twin import MLP, DomainTaskHeads, F, Gate, mix, nn, torch  # noqa: E402


class PLE(nn.Module):
    """mdrec `multitask::ple` at its defaults (one level, `heads = "domain_task"`)."""

    def __init__(self, d_in, n_domains, n_tasks, specific=1, shared=2, expert_dims=(64, 32),
                 tower_dims=(16,)):
        super().__init__()
        self.n_tasks, self.m_s = n_tasks, specific
        n_heads = n_domains * n_tasks
        self.specific = nn.ModuleList(
            MLP(d_in, list(expert_dims)) for _ in range(n_heads * specific)
        )
        self.shared = nn.ModuleList(MLP(d_in, list(expert_dims)) for _ in range(shared))
        self.gates = nn.ModuleList(Gate(d_in, specific + shared) for _ in range(n_heads))
        self.heads = DomainTaskHeads(n_domains, n_tasks, expert_dims[-1], list(tower_dims))

    def forward(self, x, r):
        t_n, m_s = self.n_tasks, self.m_s
        shared = torch.stack([e(x) for e in self.shared], 1)
        outs = {}
        for d, c in enumerate(r.counts):
            if c == 0:
                continue
            shared_d = r.rows_of(shared, d)
            for t in range(t_n):
                h = d * t_n + t
                xh = r.rows_of(x, d)
                sp = torch.stack([e(xh) for e in self.specific[h * m_s : (h + 1) * m_s]], 1)
                outs[h] = mix(torch.cat([sp, shared_d], 1), self.gates[h](xh))
        return self.heads(r, lambda d, t: outs[d * t_n + t])


class PartitionedNorm(nn.Module):
    def __init__(self, dim, n_domains, momentum=0.1, eps=1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.gamma = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.gamma_d = nn.ParameterList(nn.Parameter(torch.ones(dim)) for _ in range(n_domains))
        self.beta_d = nn.ParameterList(nn.Parameter(torch.zeros(dim)) for _ in range(n_domains))
        self.register_buffer("running_mean", torch.zeros(n_domains, dim))
        self.register_buffer("running_var", torch.ones(n_domains, dim))

    def forward(self, x, d):
        if self.training:
            mean = x.mean(0, keepdim=True)
            var = (x - mean).square().mean(0, keepdim=True)
            with torch.no_grad():
                n = x.shape[0]
                unbiased = var * (n / (n - 1)) if n > 1 else var
                m = self.momentum
                self.running_mean[d].mul_(1 - m).add_(mean[0], alpha=m)
                self.running_var[d].mul_(1 - m).add_(unbiased[0], alpha=m)
        else:
            mean = self.running_mean[d : d + 1]
            var = self.running_var[d : d + 1]
        scale = (self.gamma * self.gamma_d[d]).unsqueeze(0)
        shift = (self.beta + self.beta_d[d]).unsqueeze(0)
        return (x - mean) / (var + self.eps).sqrt() * scale + shift


class StarLinear(nn.Module):
    def __init__(self, fan_in, fan_out, n_domains):
        super().__init__()
        w = torch.empty(fan_in, fan_out)
        nn.init.xavier_uniform_(w)
        self.w = nn.Parameter(w)
        self.b = nn.Parameter(torch.zeros(fan_out))
        self.w_d = nn.ParameterList(
            nn.Parameter(torch.ones(fan_in, fan_out)) for _ in range(n_domains)
        )
        self.b_d = nn.ParameterList(nn.Parameter(torch.zeros(fan_out)) for _ in range(n_domains))

    def forward(self, x, d):
        return x @ (self.w * self.w_d[d]) + (self.b + self.b_d[d]).unsqueeze(0)


class STAR(nn.Module):
    """mdrec `multidomain::star` at its defaults (the aux network reads the domain field)."""

    def __init__(self, d_in, n_domains, n_tasks, domain_cols, fcn_dims=(256, 128, 64),
                 aux_dims=(32,)):
        super().__init__()
        self.domain_cols = domain_cols
        self.pn = PartitionedNorm(d_in, n_domains)
        dims = [d_in, *fcn_dims, n_tasks]
        self.fcn = nn.ModuleList(
            StarLinear(a, b, n_domains) for a, b in zip(dims[:-1], dims[1:])
        )
        self.aux = MLP(domain_cols[1] - domain_cols[0], list(aux_dims))
        self.aux_out = nn.Linear(self.aux.out_dim, n_tasks)

    def forward(self, x, r):
        a, b = self.domain_cols

        def domain(d):
            xd = r.rows_of(x, d)
            h = self.pn(xd, d)
            for i, layer in enumerate(self.fcn):
                h = layer(h, d)
                if i + 1 < len(self.fcn):
                    h = torch.relu(h)
            return h + self.aux_out(self.aux(r.rows_of(x[:, a:b], d)))

        return r.route(domain)


class CrossNet(nn.Module):
    """DCN-v1 cross network `x_{l+1} = x_0 (w_l^T x_l) + b_l + x_l` (mdrec `CrossNet`)."""

    def __init__(self, dim, layers):
        super().__init__()
        bound = 1.0 / dim**0.5
        self.w = nn.ParameterList(
            nn.Parameter(torch.empty(dim, 1).uniform_(-bound, bound)) for _ in range(layers)
        )
        self.b = nn.ParameterList(nn.Parameter(torch.zeros(dim)) for _ in range(layers))

    def forward(self, x0):
        x = x0
        for w, b in zip(self.w, self.b):
            x = x0 * (x @ w) + b.unsqueeze(0) + x
        return x


def logit_of_mean_sigmoid(z):
    """Logit of the mean of sigmoid(z_j) over the last axis of `[n, T, J]` (mdrec's form)."""
    if z.shape[2] == 1:
        return z.squeeze(2)
    return torch.logsumexp(-F.softplus(-z), 2) - torch.logsumexp(-F.softplus(z), 2)


class AREAD(nn.Module):
    """mdrec `multidomain::aread` at its defaults as `mdrec speed` trains it: no HEMP schedule,
    so no domain has a mask and the HEI runs as one pass over the whole batch (the warm-up
    forward); the bagging loss does not apply."""

    def __init__(self, d_in, n_tasks, domain_cols, mmoe_experts=4, expert_dims=(256, 128, 64),
                 levels=(3, 6, 12), level_dims=((64, 32), (32, 16), (16, 8)), cross_layers=3,
                 dropout=0.2):
        super().__init__()
        self.domain_cols = domain_cols
        k = domain_cols[1] - domain_cols[0]
        self.k = k

        def mlp(i, dims):
            return MLP(i, list(dims), batch_norm=True, dropout=dropout)

        # Used only with masks (HEMP); kept so that the dense Adam sees the same tensors.
        self.group_emb = nn.Parameter(torch.randn(levels[0], k))
        self.mmoe_experts = nn.ModuleList(mlp(d_in, expert_dims) for _ in range(mmoe_experts))
        self.mmoe_gates = nn.ModuleList(Gate(d_in, mmoe_experts) for _ in range(levels[0]))
        self.levels = nn.ModuleList()
        self.level_gates = nn.ModuleList()
        h = expert_dims[-1]
        for i, (n, dims) in enumerate(zip(levels, level_dims)):
            self.levels.append(nn.ModuleList(mlp(h, dims) for _ in range(n)))
            self.level_gates.append(
                nn.ModuleList(nn.Linear(2 * k, levels[i - 1]) for _ in range(n if i else 0))
            )
            h = dims[-1]
        self.cross = CrossNet(d_in, cross_layers)
        self.out = nn.ModuleList(
            nn.Linear(d_in + h, n_tasks, bias=False) for _ in range(levels[-1])
        )
        self.lin = nn.Linear(d_in, n_tasks)

    def forward(self, x, r):
        a, b = self.domain_cols
        e_dom = x[:, a:b]
        cn = self.cross(x)
        lin = self.lin(x)
        experts = torch.stack([e(x) for e in self.mmoe_experts], 1)
        q = torch.cat([e_dom, x.new_zeros(x.shape[0], self.k)], 1)
        prev = [
            self.levels[0][n](mix(experts, g(x))) for n, g in enumerate(self.mmoe_gates)
        ]
        for level, gates in zip(self.levels[1:], self.level_gates[1:]):
            stacked = torch.stack(prev, 1)
            prev = [e(mix(stacked, torch.softmax(g(q), 1))) for e, g in zip(level, gates)]
        z = [out(torch.cat([cn, e], 1)) + lin for out, e in zip(self.out, prev)]
        return logit_of_mean_sigmoid(torch.stack(z, 2))


def build(name, data, dim):
    d_in = dim * len(data.vocab) + data.num.shape[1]
    if name == "ple":
        return PLE(d_in, data.n_domains, data.n_tasks)
    # The domain indicator is the last categorical field (see twin.movielens_1m).
    k = len(data.vocab) - 1
    cols = (k * dim, (k + 1) * dim)
    if name == "star":
        return STAR(d_in, data.n_domains, data.n_tasks, cols)
    return AREAD(d_in, data.n_tasks, cols)


MODELS = {
    "ple": "PLE (1 level, 1 specific + 2 shared experts 113-64-32, towers 32-16-1)",
    "star": "STAR (PN, star FCN 113-256-128-64-2, aux 16-32-2)",
    "aread": "AREAD (MMoE 4x 113-256-128-64, HEI 3/6/12, DCN 3 layers, no masks)",
}


def main():
    p = twin.parser(__doc__.splitlines()[0], 1024)
    p.add_argument("--model", choices=sorted(MODELS), required=True)
    p.add_argument("--data-dir", default=os.environ.get("ML1M_DIR", "ml-1m"))
    args = p.parse_args()
    twin.setup(args)
    data = twin.movielens_1m(args.data_dir)
    emb = twin.Embeddings(data.vocab, 16, sparse=True)
    model = twin.Twin(build(args.model, data, 16), emb)
    twin.run(
        args.model,
        MODELS[args.model],
        data,
        model,
        lambda rows: torch.cat(
            [emb(data.cat.index_select(0, rows)), data.num.index_select(0, rows)], 1
        ),
        args,
        lr=1e-3,
        emb_optimizer="adam",
    )


if __name__ == "__main__":
    main()
