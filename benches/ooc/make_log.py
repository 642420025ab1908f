#!/usr/bin/env python3
"""Writes a synthetic multi-domain, two-task interaction log as CSV, chunk by chunk (memory
stays at one chunk), for the out-of-core benchmark (benches/ooc/run.sh).

Columns: user_id, item_id, user_group, item_cat, domain, hour, device, city (categorical),
price, age (numeric), ts (integer time), click, like (0/1). Labels come from a logistic model of
user, item, domain x category and price effects, so a model has something to learn.

usage: make_log.py ROWS OUT.csv [SEED]
"""
import sys

import numpy as np
import pandas as pd


def main():
    rows = int(sys.argv[1])
    out = sys.argv[2]
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    rng = np.random.default_rng(seed)
    n_users, n_items, n_dom, n_cat = 1_000_000, 200_000, 5, 100
    user_bias = rng.normal(0, 0.8, n_users)
    user_group = rng.integers(0, 50, n_users)
    item_bias = rng.normal(0, 0.8, n_items)
    item_cat = rng.integers(0, n_cat, n_items)
    item_price = np.round(np.exp(rng.normal(3, 0.8, n_items)), 1)
    dom_cat = rng.normal(0, 1.0, (n_dom, n_cat))
    dom_bias = rng.normal(-1.0, 0.3, n_dom)
    chunk = 1_000_000
    done = 0
    with open(out, "w", newline="") as f:
        while done < rows:
            n = min(chunk, rows - done)
            u = (rng.zipf(1.3, n) - 1) % n_users
            i = np.minimum((rng.random(n) ** 2 * n_items).astype(np.int64), n_items - 1)
            d = np.minimum(rng.geometric(0.45, n) - 1, n_dom - 1)
            hour = rng.integers(0, 24, n)
            device = rng.integers(0, 4, n)
            city = rng.integers(0, 300, n)
            age = rng.integers(18, 70, n)
            z = (user_bias[u] + item_bias[i] + dom_cat[d, item_cat[i]] + dom_bias[d]
                 - 0.2 * np.log(item_price[i]) + 0.1 * (device == 2))
            click = rng.random(n) < 1 / (1 + np.exp(-z))
            like = click & (rng.random(n) < 1 / (1 + np.exp(-(0.5 * user_bias[u] - 1.0))))
            df = pd.DataFrame({
                "user_id": u, "item_id": i, "user_group": user_group[u],
                "item_cat": item_cat[i], "domain": d, "hour": hour, "device": device,
                "city": city, "price": item_price[i], "age": age,
                "ts": np.arange(done, done + n), "click": click.astype(np.int8),
                "like": like.astype(np.int8),
            })
            df.to_csv(f, header=(done == 0), index=False)
            done += n
            print(f"{done} rows", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
