"""PyTorch twin of `mdrec speed --workload engine`.

The workload: MMoE, batch 1024, 20 categorical fields x 10,000 ids, embedding dim 16 (input
320), 6 experts 320 -> 256 -> 128 (Linear + ReLU, no norm, no dropout), one softmax(Linear(320,
6)) gate and one tower 128 -> 64 -> 1 per domain (3 domains, one task), gates and towers on
their domain's rows only; 65,536 random rows (ids uniform, domain uniform over 3, label 1 with
probability 0.3); loss = BCE with logits reduced by mdrec's default `cell_mean_sum`.
Optimizers as mdrec's defaults: Adam (lr 1e-3, eps 1e-8, weight decay 1e-5) on the dense
network; the embedding rows sparse (`nn.Embedding(sparse=True)`) with SparseAdam (lr 1e-3) on
the touched rows, the weight decay added to those rows' gradients (mdrec's `EmbeddingStore`
`adam` update).

    python3 benches/peers/engine.py [--steps 60 --warmup 5 --threads 2]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import twin  # noqa: E402
from twin import MLP, DomainTaskHeads, Gate, mix, nn, torch  # noqa: E402


class MMoE(nn.Module):
    """mdrec `multitask::mmoe` with `heads.layout = domain_task`, `gate = linear`."""

    def __init__(self, d_in, n_experts, expert_dims, n_domains, n_tasks, tower_dims):
        super().__init__()
        self.n_tasks = n_tasks
        self.experts = nn.ModuleList(MLP(d_in, expert_dims) for _ in range(n_experts))
        h = self.experts[0].out_dim
        self.heads = DomainTaskHeads(n_domains, n_tasks, h, tower_dims)
        self.gates = nn.ModuleList(Gate(d_in, n_experts) for _ in range(n_domains * n_tasks))

    def forward(self, x, routing):
        stacked = torch.stack([e(x) for e in self.experts], 1)
        t_n = self.n_tasks
        return self.heads(
            routing,
            lambda d, t: mix(
                routing.rows_of(stacked, d),
                self.gates[d * t_n + t](routing.rows_of(x, d)),
            ),
        )


def engine_data(n, fields, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    ids = [torch.randint(0, vocab, (n,), generator=g).numpy() for _ in range(fields)]
    domain = torch.randint(0, 3, (n,), generator=g)
    labels = (torch.rand((n, 1), generator=g) < 0.3).float()
    return twin.Data(
        twin.offset_ids(ids, [vocab] * fields), None, domain, labels, [vocab] * fields, 3,
        "random ids",
    )


def main():
    args = twin.parser(__doc__.splitlines()[0], 1024).parse_args()
    twin.setup(args)
    data = engine_data(65_536, 20, 10_000, 7)
    emb = twin.Embeddings(data.vocab, 16, sparse=True)
    net = MMoE(20 * 16, 6, [256, 128], 3, 1, [64])
    model = twin.Twin(net, emb)
    twin.run(
        "engine",
        "engine (MMoE, 20x10k x16, 6 experts 320-256-128, 3 towers 128-64-1)",
        data,
        model,
        lambda rows: emb(data.cat.index_select(0, rows)),
        args,
        lr=1e-3,
        emb_optimizer="adam",
    )


if __name__ == "__main__":
    main()
