#!/usr/bin/env python3
"""GMF (NCF) trained in PyTorch with fpd.torch.FPDEmbeddingBag tables, on the split
that build/sample-train-gmf wrote, so its HR@10 stands next to the C trainer's.

    build/sample-train-gmf ../shared/data/movielens-1m/ratings.tsv --tables fpd --dim 64 \\
        --cores 2 --rank 24 --core-lr 3e-3 --epochs 2 --seeds 1 -o /tmp/gmf --write-test
    PYTHONPATH=tools/python /usr/bin/python3 tools/python/bench/gmf_torch.py \\
        ../shared/data/movielens-1m/ratings.tsv /tmp/gmf --dim 64 --cores 2 --rank 24 --core-lr 3e-3 --epochs 2

The same model and schedule as the C trainer (samples/train-gmf.c, fpd_gmf_train):
score = sigmoid(sum(u * i * w) + b); tables from fpd_init, normal(0, 0.01^2) rows;
w lecun-uniform, b = 0; every training positive once per epoch in shuffled order, with
4 negatives drawn uniformly among the items the user has no training positive with;
minibatches of 255 samples (51 positives with their negatives); mean logistic loss;
lazy Adam on the core slices a batch touches (sparse=True + torch.optim.SparseAdam, as
fpd_gmf_train's lazy Adam), Adam on w and b. The training data: every rating of the
split's users (ids 1-based in RATINGS) except each user's held-out item
(PREFIX.test.rating); HR@10 on PREFIX.test.negative, ties counting for the held-out
item, as fpd-eval. Random streams differ from the C trainer's, so runs agree in
distribution, not bit for bit.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fpd.torch as ft  # noqa: E402


def load(ratings, prefix):
    with open(ratings) as f:  # a first line that does not start with a number is a header
        head = f.readline().lstrip()
    skip = 0 if head[:1].isdigit() else 1
    raw = np.loadtxt(ratings, dtype=np.int64, skiprows=skip, usecols=(0, 1)) - 1
    test = np.loadtxt(prefix + ".test.rating", dtype=np.int64, usecols=(0, 1), ndmin=2)
    cand = []
    with open(prefix + ".test.negative") as f:
        for line in f:
            parts = line.split("\t")
            cand.append([int(parts[0].strip("()").split(",")[1])] + [int(x) for x in parts[1:]])
    cand = np.array(cand, dtype=np.int64)
    n_items = int(raw[:, 1].max()) + 1
    users_in = test[:, 0].max() + 1
    raw = raw[raw[:, 0] < max(users_in, 1)]
    held = set(map(tuple, test.tolist()))
    keep = np.array([(u, i) not in held for u, i in raw.tolist()])
    return raw[keep], test, cand, int(raw[:, 0].max()) + 1, n_items


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ratings")
    ap.add_argument("prefix", help="PREFIX of sample-train-gmf -o PREFIX --write-test")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--terms", type=int, default=1)
    ap.add_argument("--cores", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--negatives", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--core-lr", type=float, default=None)
    ap.add_argument("--init-scale", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print the last epoch's figures as one JSON line")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    train, test, cand, U, I = load(a.ratings, a.prefix)
    D = a.dim
    print(f"{U} users, {I} items, {len(train)} training positives, {len(test)} test users", file=sys.stderr)
    kw = dict(mode="sum", rank=a.rank, terms=a.terms, k=a.cores, init_scale=a.init_scale, sparse=True,
              threads=a.threads)
    user = ft.FPDEmbeddingBag(U, D, seed=2 * a.seed, **kw)
    item = ft.FPDEmbeddingBag(I, D, seed=2 * a.seed + 1, **kw)
    w = torch.nn.Parameter((torch.rand(D) * 2 - 1) * math.sqrt(3.0 / D))
    b = torch.nn.Parameter(torch.zeros(1))
    params = sum(p.numel() for p in list(user.parameters()) + list(item.parameters())) + D + 1
    print(f"user {user.shape['row_shape']} item {item.shape['row_shape']} col {user.shape['col_shape']} "
          f"ranks {user.shape['ranks']}; ratio {((U + I) * D + D + 1) / params:.1f}x", file=sys.stderr)
    opt_cores = torch.optim.SparseAdam(list(user.parameters()) + list(item.parameters()), lr=a.core_lr or a.lr)
    opt_dense = torch.optim.Adam([w, b], lr=a.lr)
    # negatives: items without a training positive of the user (sorted keys for membership)
    keys = np.unique(train[:, 0] * I + train[:, 1])
    per = a.batch // (1 + a.negatives)

    def logits(u, i):
        return (user(u.reshape(-1, 1)) * item(i.reshape(-1, 1)) * w).sum(1) + b

    def evaluate():
        with torch.no_grad():
            u = torch.from_numpy(np.repeat(test[:, 0], cand.shape[1]))
            s = logits(u, torch.from_numpy(cand.reshape(-1))).reshape(cand.shape)
            rank = (s[:, 1:] > s[:, :1]).sum(1)
            hit = rank < 10
            ndcg = torch.where(hit, 1.0 / torch.log2(rank.double() + 2), torch.zeros(1, dtype=torch.float64))
            return hit.double().mean().item(), ndcg.mean().item()

    for ep in range(1, a.epochs + 1):
        t0, total, nb = time.perf_counter(), 0.0, 0
        order = rng.permutation(len(train))
        for s in range(0, len(order), per):
            q = order[s:s + per]
            pu, pi = train[q, 0], train[q, 1]
            neg = rng.integers(0, I, (len(q), a.negatives))
            for _ in range(100):  # redraw the negatives that are positives of the user
                k = pu[:, None] * I + neg
                pos = np.searchsorted(keys, k)
                bad = keys[np.minimum(pos, len(keys) - 1)] == k
                if not bad.any():
                    break
                neg[bad] = rng.integers(0, I, int(bad.sum()))
            u = torch.from_numpy(np.repeat(pu, 1 + a.negatives))
            i = torch.from_numpy(np.concatenate([pi[:, None], neg], 1).reshape(-1))
            y = torch.tensor(np.tile([1.0] + [0.0] * a.negatives, len(q)), dtype=torch.float32)
            loss = F.binary_cross_entropy_with_logits(logits(u, i), y)
            opt_cores.zero_grad()
            opt_dense.zero_grad()
            loss.backward()
            opt_cores.step()
            opt_dense.step()
            total += loss.item()
            nb += 1
        sec = time.perf_counter() - t0
        hr, ndcg = evaluate()
        print(f"torch fpd epoch {ep} loss {total / nb:.4f} {sec:.1f} s HR@10 {hr:.4f} NDCG@10 {ndcg:.4f}", flush=True,
              file=sys.stderr if a.json else sys.stdout)
    if a.json:
        print(json.dumps({"schema": "gmf-torch/1", "epochs": a.epochs, "seed": a.seed, "params": params,
                          "ratio": ((U + I) * D + D + 1) / params, "hr10": hr, "ndcg10": ndcg,
                          "final_loss": total / nb, "seconds_per_epoch": sec}))


if __name__ == "__main__":
    main()
