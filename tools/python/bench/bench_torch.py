#!/usr/bin/env python3
"""FPDEmbeddingBag (libfpd's engine) against torch.nn.EmbeddingBag, forward and
backward, in the same process, on the CPU.

Batches of --batch bags (65,536) of --pooling ids each, ids drawn from Zipf(--zipf)
over the rows by the inverse CDF, as tests/bench/bench-util.h draws them (rank q has
probability ~ (q + 1)^-s; id = rank, so popular ids share leading digits, unless
--shuffle-ids maps ranks to random ids). Each module runs --warmup + --iters steps of
forward, then backward of sum(out * g); the median of each phase is reported, and the
gradients are dropped between steps (param.grad = None, as optimizer.zero_grad does).
nn.EmbeddingBag is timed with dense gradients (sparse=False, PyTorch's default: the
backward fills a [rows, dim] gradient) and with sparse=True; FPDEmbeddingBag with dense
core gradients and sparse=True. Both use --threads threads.

    PYTHONPATH=tools/python /usr/bin/python3 tools/python/bench/bench_torch.py
    ... --rows 10000000 --dim 64 --rank 16 --threads 2 --shuffle-ids --json
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fpd  # noqa: E402
import fpd.torch as ft  # noqa: E402


def zipf_ids(rng, rows, s, n, perm=None):
    cdf = np.cumsum(np.arange(1, rows + 1, dtype=np.float64) ** -s)
    ids = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right").astype(np.int64)
    ids = np.minimum(ids, rows - 1)
    return perm[ids] if perm is not None else ids


def bench(name, module, batches, grads, warmup, iters):
    fw, bw = [], []
    for q in range(warmup + iters):
        ids, offs = batches[q % len(batches)]
        for p in module.parameters():
            p.grad = None
        t0 = time.perf_counter()
        out = module(ids, offs)
        t1 = time.perf_counter()
        out.backward(grads)
        t2 = time.perf_counter()
        if q >= warmup:
            fw.append(t1 - t0)
            bw.append(t2 - t1)
    f, b = float(np.median(fw)) * 1e3, float(np.median(bw)) * 1e3
    return {"module": name, "forward_ms": f, "backward_ms": b, "total_ms": f + b}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--rank", type=int, default=None, help="FPD rank (default: the heuristic's)")
    ap.add_argument("--terms", type=int, default=None)
    ap.add_argument("--batch", type=int, default=65536, help="bags per batch")
    ap.add_argument("--pooling", type=int, default=1, help="ids per bag")
    ap.add_argument("--mode", default="sum", choices=["sum", "mean"])
    ap.add_argument("--zipf", type=float, default=1.05)
    ap.add_argument("--shuffle-ids", action="store_true", help="map Zipf ranks to random ids")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-dense-grad", action="store_true", help="skip nn.EmbeddingBag with sparse=False")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    perm = rng.permutation(a.rows) if a.shuffle_ids else None
    n = a.batch * a.pooling
    batches = [(torch.from_numpy(zipf_ids(rng, a.rows, a.zipf, n, perm)),
                torch.arange(0, n, a.pooling, dtype=torch.int64)) for _ in range(3)]
    distinct = float(np.mean([np.unique(b[0].numpy()).size for b in batches]))
    grads = torch.randn(a.batch, a.dim)
    runs, modules = [], []
    if not a.no_dense_grad:
        modules.append(("nn.EmbeddingBag", lambda: nn.EmbeddingBag(a.rows, a.dim, mode=a.mode)))
    modules += [("nn.EmbeddingBag sparse", lambda: nn.EmbeddingBag(a.rows, a.dim, mode=a.mode, sparse=True)),
                ("FPDEmbeddingBag", lambda: ft.FPDEmbeddingBag(a.rows, a.dim, mode=a.mode, rank=a.rank, terms=a.terms,
                                                               threads=a.threads, seed=1)),
                ("FPDEmbeddingBag sparse", lambda: ft.FPDEmbeddingBag(a.rows, a.dim, mode=a.mode, rank=a.rank,
                                                                      terms=a.terms, sparse=True, threads=a.threads,
                                                                      seed=1))]
    shape = None
    for name, make in modules:
        m = make()
        r = bench(name, m, batches, grads, a.warmup, a.iters)
        r["bytes"] = sum(p.numel() * p.element_size() for p in m.parameters())
        if isinstance(m, ft.FPDEmbeddingBag):
            shape = m.shape
        runs.append(r)
        del m
    res = {"schema": "bench_torch/1", "rows": a.rows, "dim": a.dim, "batch": a.batch, "pooling": a.pooling,
           "mode": a.mode, "zipf": a.zipf, "shuffle_ids": a.shuffle_ids, "distinct_ids": distinct,
           "threads": a.threads, "torch": torch.__version__, "libfpd": fpd.version(), "fpd_shape": shape,
           "runs": runs}
    if a.json:
        print(json.dumps(res, indent=1))
        return
    print(f"rows {a.rows} x dim {a.dim}, {a.batch} bags x {a.pooling} ids, Zipf({a.zipf}){' shuffled' if a.shuffle_ids else ''}"
          f" ({distinct:.0f} distinct ids a batch), mode {a.mode}, {a.threads} thread(s), torch {torch.__version__}")
    print(f"FPD: terms {shape['terms']}, row shape {shape['row_shape']}, col shape {shape['col_shape']}, "
          f"ranks {shape['ranks']}")
    print(f"{'module':<24} {'MB':>9} {'forward ms':>11} {'backward ms':>12} {'total ms':>9}")
    for r in runs:
        print(f"{r['module']:<24} {r['bytes'] / 2**20:9.2f} {r['forward_ms']:11.2f} {r['backward_ms']:12.2f} "
              f"{r['total_ms']:9.2f}")


if __name__ == "__main__":
    main()
