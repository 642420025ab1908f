"""PyTorch twin of mdrec's M3oE at the official configuration on MovieLens-1M
(`benches/specs/m3oe_official.toml`), timed like
`mdrec speed --workload dataset --model m3oe --batch-size 40960 --set train.lr=0.01
--set train.embedding.optimizer=adam_dense`.

Data: the real MovieLens-1M training split as mdrec's `movielens-1m` recipe gives it (same rows
in the same order, same fields, domains and labels; see `twin.movielens_1m`), read from
`--data-dir` / `$ML1M_DIR` (the unzipped `ml-1m` folder).

Model (mdrec `multidomain::m3oe`, defaults plus the spec's `num_shared_experts = 4`,
`automl = "joint"`): input x = 7 categorical embeddings x 16 + the numeric age = 113;
star layer per domain on its rows `x (W_s * W_d) + b_s + b_d` (113 -> 512, Xavier-uniform
weights, zero biases); `e = MLP_LN(h -> 256) + MLP_LN(x -> 256)`; 4 shared, 3 domain and 2
task experts `MLP_LN(e -> 64)`; per (domain, task) on the domain's rows a gate
softmax(Linear(stopgrad(e) -> 4)) over the shared experts, the domain and task views balanced by
sigmoid(bal_d), sigmoid(bal_t) and scaled by sigmoid(exp_d), sigmoid(exp_t) (four trainable
scalars starting at 1, trained by the main Adam), added, then a tower
`Linear(64, 64) -> LayerNorm -> ReLU -> Linear(64, 1)`. MLP_LN = Linear -> LayerNorm -> ReLU.

Optimizer: one dense Adam (lr 0.01, eps 1e-8, weight decay 1e-5) on the network and on every
embedding row (`train.embedding.optimizer = "adam_dense"`, the official code's
torch.optim.Adam over nn.Embedding). Loss: BCE with logits, mdrec's `cell_mean_sum`
(sum over (domain, task) cells of the cell's mean).

    python3 benches/peers/m3oe.py --data-dir ml-1m [--steps 60 --warmup 5 --threads 2]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import twin  # noqa: E402
from twin import MLP, DomainTaskHeads, Gate, mix, nn, torch  # noqa: E402


def balance(own, total, n, a):
    """`a * own + (1 - a) / (n - 1) * (total - own)`; `own` alone when n = 1."""
    if n == 1:
        return own
    others = total - own
    return own * a + others * ((1.0 - a) / (n - 1))


class M3oE(nn.Module):
    """mdrec `multidomain::m3oe` with `fusion = "add"`, `gate = "linear"`."""

    def __init__(self, d_in, n_domains, n_tasks, star_dim=512, shared_dim=256,
                 expert_dims=(64,), n_shared=4, fusion_init=1.0):
        super().__init__()
        self.n_domains, self.n_tasks = n_domains, n_tasks

        def xavier():
            w = torch.empty(d_in, star_dim)
            nn.init.xavier_uniform_(w)
            return nn.Parameter(w)

        self.star_shared_w = xavier()
        self.star_shared_b = nn.Parameter(torch.zeros(star_dim))
        self.star_domain_w = nn.ParameterList(xavier() for _ in range(n_domains))
        self.star_domain_b = nn.ParameterList(
            nn.Parameter(torch.zeros(star_dim)) for _ in range(n_domains)
        )
        self.star_mlp = MLP(star_dim, [shared_dim], layer_norm=True)
        self.skip = MLP(d_in, [shared_dim], layer_norm=True)

        def experts(n):
            return nn.ModuleList(MLP(shared_dim, list(expert_dims), True) for _ in range(n))

        self.shared = experts(n_shared)
        self.domain = experts(n_domains)
        self.task = experts(n_tasks)
        h = expert_dims[-1]
        self.gates = nn.ModuleList(Gate(shared_dim, n_shared) for _ in range(n_domains * n_tasks))
        self.bal_d, self.bal_t, self.exp_d, self.exp_t = (
            nn.Parameter(torch.full((1,), fusion_init)) for _ in range(4)
        )
        self.heads = DomainTaskHeads(n_domains, n_tasks, h, [h], layer_norm=True)

    def forward(self, x, r):
        ws, bs = self.star_shared_w, self.star_shared_b
        h = r.route(
            lambda d: r.rows_of(x, d) @ (ws * self.star_domain_w[d])
            + (bs + self.star_domain_b[d]).unsqueeze(0)
        )
        e = self.star_mlp(h) + self.skip(x)
        e_sg = e.detach()
        shared = torch.stack([m(e) for m in self.shared], 1)
        dom = [m(e) for m in self.domain]
        task = [m(e) for m in self.task]
        dom_sum = dom[0]
        for v in dom[1:]:
            dom_sum = dom_sum + v
        task_sum = task[0]
        for v in task[1:]:
            task_sum = task_sum + v
        bal_d, bal_t, exp_d, exp_t = (
            torch.sigmoid(p).reshape(1, 1) for p in (self.bal_d, self.bal_t, self.exp_d, self.exp_t)
        )
        t_n = self.n_tasks

        def view(d, t):
            gate = self.gates[d * t_n + t](r.rows_of(e_sg, d))
            s = mix(r.rows_of(shared, d), gate)
            dv = balance(r.rows_of(dom[d], d), r.rows_of(dom_sum, d), self.n_domains, bal_d)
            tv = balance(r.rows_of(task[t], d), r.rows_of(task_sum, d), self.n_tasks, bal_t)
            return s + dv * exp_d + tv * exp_t

        return self.heads(r, view)


def main():
    p = twin.parser(__doc__.splitlines()[0], 40960)
    p.add_argument("--data-dir", default=os.environ.get("ML1M_DIR", "ml-1m"))
    args = p.parse_args()
    twin.setup(args)
    data = twin.movielens_1m(args.data_dir)
    emb = twin.Embeddings(data.vocab, 16, sparse=False)
    d_in = 16 * len(data.vocab) + data.num.shape[1]
    net = M3oE(d_in, data.n_domains, data.n_tasks)
    model = twin.Twin(net, emb)
    twin.run(
        "m3oe",
        "m3oe official (star 512, shared 256, 4+3+2 experts of 64, lr 0.01, dense Adam)",
        data,
        model,
        lambda rows: torch.cat(
            [emb(data.cat.index_select(0, rows)), data.num.index_select(0, rows)], 1
        ),
        args,
        lr=0.01,
        emb_optimizer="adam_dense",
    )


if __name__ == "__main__":
    main()
