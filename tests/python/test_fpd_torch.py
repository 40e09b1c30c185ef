#!/usr/bin/env python3
"""Tests of fpd.torch (FPDEmbeddingBag, FPDEmbedding, replace_embeddings) against
libfpd.so and PyTorch's own modules.

Usage: test_fpd_torch.py BUILD_DIR ROOT_DIR [RATINGS.tsv]   (run by tests/cli/test-python.sh)
Prints "ok NAME" / "not ok NAME: why" / "skip NAME: why"; exits 1 on a failure.

References: torch.nn.EmbeddingBag / nn.Embedding over the dense rows of the definition
(reference.py), so the pooling semantics are PyTorch's; core gradients from a pure
PyTorch reconstruction of the table in double precision differentiated by autograd;
torch.autograd.gradcheck of the C backward in float32 (exact central differences,
because a row is linear in each single core entry) and of the double reference.
"""
import copy
import io
import json
import os
import sys
import tempfile
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

BUILD, ROOT = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
RATINGS = sys.argv[3] if len(sys.argv) > 3 and os.path.exists(sys.argv[3]) else None
sys.path.insert(0, os.path.join(ROOT, "tools", "python"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("FPD_LIBRARY", os.path.join(BUILD, "libfpd.so"))

import fpd  # noqa: E402
import fpd.torch as ft  # noqa: E402
from reference import finish, random_cores, read_safetensors, rel, report, rows_by_definition, skip, st_tensor  # noqa: E402

WORK = tempfile.mkdtemp(prefix="fpd-torchtest-")
ROW, COL, RANKS, P, N = [4, 3, 5], [2, 3, 2], [1, 3, 2, 1], 2, 55


def table_double(cores, row_shape, perm, rows):
    """The table [rows, D] from the cores, double, differentiable (pure PyTorch)."""
    out = 0
    for t in range(cores[0].shape[0]):
        acc = cores[0][t][:, 0]                                    # [n0, d0, r1]
        for c in cores[1:]:
            g = c[t]                                               # [n, r, d, s]
            x = torch.einsum("ajr,brds->abjds", acc, g)
            acc = x.reshape(x.shape[0] * x.shape[1], x.shape[2] * x.shape[3], x.shape[4])
        out = out + acc[:, :, 0]
    idx = torch.as_tensor(perm if perm is not None else np.arange(rows), dtype=torch.long)
    return out[idx]


def setup(rng, mode="sum", **kw):
    cores = random_cores(rng, P, ROW, COL, RANKS)
    perm = rng.permutation(int(np.prod(ROW)))[:N]
    layer = fpd.Layer.from_cores(cores, N, perm)
    bag = ft.FPDEmbeddingBag(N, 12, mode=mode, layer=layer, **kw)
    W = torch.tensor(rows_by_definition(cores, ROW, COL, perm, np.arange(N)))
    return bag, cores, perm, W


def test_forward_backward(rng):
    n = 25
    ids = torch.tensor(rng.integers(0, N, n))
    ids[[2, 8]] = 7
    w = torch.tensor(rng.standard_normal(n), dtype=torch.float32)
    offs = torch.tensor([0, 4, 4, 11, 20])
    cases = [("sum", {}, ids, offs, None), ("mean", {}, ids, offs, None), ("sum", {}, ids, offs, w),
             ("sum", {"padding_idx": 7}, ids, offs, w), ("mean", {"padding_idx": 7}, ids, offs, None),
             ("mean", {"padding_idx": -48}, ids, offs, None),
             ("sum", {"include_last_offset": True}, ids, torch.cat([offs, torch.tensor([n])]), None),
             ("mean", {}, ids[:24].reshape(6, 4), None, None), ("sum", {}, ids[:24].reshape(6, 4), None, w[:24].reshape(6, 4)),
             ("sum", {"include_last_offset": True}, ids[:24].reshape(6, 4), None, None),
             ("mean", {}, ids[:0], torch.tensor([0, 0, 0]), None)]
    for mode, kw, x, o, psw in cases:
        label = f"mode={mode} {kw} input {tuple(x.shape)} weights={psw is not None}"
        bag, cores, perm, W = setup(rng, mode, **kw)
        ref = nn.EmbeddingBag.from_pretrained(W.float(), freeze=False, mode=mode, **kw)
        pw = None if psw is None else psw.clone().requires_grad_(True)
        pw_ref = None if psw is None else psw.clone().double().requires_grad_(True)
        out = bag(x, o, per_sample_weights=pw)
        want = ref(x, o, per_sample_weights=None if psw is None else psw)
        e = rel(out.detach(), want.detach())
        report(f"torch forward equals nn.EmbeddingBag: {label} ({e:.1e})", e < 1e-5 and out.shape == want.shape,
               f"{e} {tuple(out.shape)} {tuple(want.shape)}")
        # gradients: the C backward against autograd through the double reconstruction
        g = torch.tensor(rng.standard_normal(tuple(out.shape)), dtype=torch.float32)
        (out * g).sum().backward()
        cd = [torch.tensor(c, dtype=torch.float64, requires_grad=True) for c in cores]
        Wd = table_double(cd, ROW, perm, N)
        # the same batch as 1-D input; with include_last_offset, without the entries past
        # the last offset (in no bag): torch 1.13's own embedding_bag backward corrupts
        # the heap when they are there
        xf, of, pf = x.reshape(-1), o, pw_ref
        if x.dim() == 2:
            of = torch.arange(0, x.numel(), x.shape[1])
            pf = None if pw_ref is None else pw_ref.reshape(-1)
        if kw.get("include_last_offset"):
            xf, pf = xf[:int(of[-1])], None if pf is None else pf[:int(of[-1])]
        od = F.embedding_bag(xf, Wd, of, mode=mode, per_sample_weights=pf, padding_idx=ref.padding_idx,
                             include_last_offset=kw.get("include_last_offset", False))
        (od * g.double()).sum().backward()
        errs = [rel(bag.cores[m].grad, cd[m].grad) for m in range(3)]
        if psw is not None:
            errs.append(rel(pw.grad, pw_ref.grad))
        report(f"torch backward equals autograd of the double reference: {label} (max {max(errs):.1e})",
               max(errs) < 1e-4, str(errs))


def test_gradcheck(rng):
    bag, cores, perm, W = setup(rng, "sum", padding_idx=7)
    ids = torch.tensor(rng.integers(0, N, 14))
    ids[3] = 7
    offs = torch.tensor([0, 3, 3, 9])
    w = torch.tensor(rng.standard_normal(14), dtype=torch.float32, requires_grad=True)
    # W is linear in each single core entry (each term's product holds one slice of each
    # core), so central differences are exact for any eps: a large eps leaves only
    # float32 rounding (~1e-6 |out| / eps) in the numerical Jacobian.
    with warnings.catch_warnings():  # "not double precision": on purpose, see above
        warnings.simplefilter("ignore")
        ok = torch.autograd.gradcheck(lambda wt, *c: bag(ids, offs, per_sample_weights=wt), (w, *bag.cores),
                                      eps=0.05, atol=2e-3, rtol=2e-3, raise_exception=False)
    report("gradcheck (float32, exact differences) of the C backward: cores and per_sample_weights", ok, "")
    cd = tuple(torch.tensor(c, dtype=torch.float64, requires_grad=True) for c in cores)
    ok = torch.autograd.gradcheck(
        lambda *c: F.embedding_bag(ids, table_double(c, ROW, perm, N), offs, mode="sum", padding_idx=7), cd,
        raise_exception=False)
    report("gradcheck (float64) of the double reference itself", ok, "")
    # the module used twice in one graph: the engine re-runs the first batch's forward
    bag.zero_grad()
    a, b = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 5, 6])
    (bag(a, torch.tensor([0])).sum() + 2 * bag(b, torch.tensor([0, 2])).sum()).backward()
    both = [c.grad.clone() for c in bag.cores]
    bag.zero_grad()
    bag(a, torch.tensor([0])).sum().backward()
    (2 * bag(b, torch.tensor([0, 2])).sum()).backward()
    e = max(rel(x, c.grad) for x, c in zip(both, bag.cores))
    report(f"two forwards before one backward: gradients of both batches ({e:.1e})", e < 1e-6, f"{e}")


def test_embedding(rng):
    cores = random_cores(rng, P, ROW, COL, RANKS)
    layer = fpd.Layer.from_cores(cores, N)
    emb = ft.FPDEmbedding(N, 12, padding_idx=7, layer=layer)
    W = torch.tensor(rows_by_definition(cores, ROW, COL, None, np.arange(N)), dtype=torch.float32)
    W[7] = 0.0  # nn.Embedding's padding row (zeroed at init, never trained)
    ref = nn.Embedding.from_pretrained(W, freeze=False, padding_idx=7)
    x = torch.tensor(rng.integers(0, N, (3, 5)))
    x[1, 1] = 7
    out, want = emb(x), ref(x)
    report("FPDEmbedding equals nn.Embedding (padding row zero), shape [3, 5, D]",
           out.shape == (3, 5, 12) and rel(out.detach(), want.detach()) < 1e-5, "")
    g = torch.randn(out.shape)
    (out * g).sum().backward()
    cd = [torch.tensor(c, dtype=torch.float64, requires_grad=True) for c in cores]
    Wd = table_double(cd, ROW, None, N)
    gd = g.double().clone()
    gd[x == 7] = 0.0  # padding entries carry no gradient
    (Wd[x] * gd).sum().backward()
    e = max(rel(emb.cores[m].grad, cd[m].grad) for m in range(3))
    report(f"FPDEmbedding backward equals the reference, padding entries without gradient ({e:.1e})", e < 1e-4, f"{e}")


def expect_raise(name, exc, fn, text=None):
    try:
        fn()
        report(name, False, "no exception")
    except exc as e:
        report(name, text is None or text in str(e), str(e))
    except Exception as e:  # noqa: BLE001
        report(name, False, f"{type(e).__name__}: {e}")


def test_errors(rng):
    bag, *_ = setup(rng, "mean")
    emb = ft.FPDEmbedding(N, 12, rank=2)
    expect_raise("id = num_embeddings: IndexError as PyTorch", IndexError, lambda: bag(torch.tensor([N]), torch.tensor([0])))
    expect_raise("negative id: IndexError", IndexError, lambda: bag(torch.tensor([[0, -1]])))
    expect_raise("FPDEmbedding id out of range: IndexError", IndexError, lambda: emb(torch.tensor([3, N + 5])))
    expect_raise("1-D input without offsets: ValueError", ValueError, lambda: bag(torch.tensor([1, 2])))
    expect_raise("2-D input with offsets: ValueError", ValueError, lambda: bag(torch.tensor([[1, 2]]), torch.tensor([0])))
    expect_raise("per_sample_weights with mode mean: NotImplementedError", NotImplementedError,
                 lambda: bag(torch.tensor([1, 2]), torch.tensor([0]), torch.ones(2)))
    expect_raise("offsets not starting at 0: FPDError (a RuntimeError) from the library", RuntimeError,
                 lambda: bag(torch.tensor([1, 2]), torch.tensor([1])), "offsets[0]")
    expect_raise("device='cuda': RuntimeError naming CUDA", RuntimeError,
                 lambda: ft.FPDEmbeddingBag(N, 12, device="cuda", rank=2), "CUDA")
    expect_raise("input on another device (meta): RuntimeError naming CUDA", RuntimeError,
                 lambda: bag(torch.tensor([1, 2], device="meta"), torch.tensor([0], device="meta")), "CUDA")


def test_training_state(rng):
    bag, cores, perm, W = setup(rng, "sum")
    ids, offs = torch.tensor(rng.integers(0, N, 20)), torch.tensor([0, 5, 12])
    opt = torch.optim.Adam(bag.parameters(), lr=0.05)
    for _ in range(3):
        opt.zero_grad()
        bag(ids, offs).pow(2).sum().backward()
        opt.step()
    shared = all(p.data_ptr() == c.__array_interface__["data"][0] for p, c in zip(bag.cores, bag._layer.cores))
    report("after Adam steps the parameters still are the layer's memory (no copy)", shared, "")
    now = [p.detach().numpy().copy() for p in bag.cores]
    want = torch.tensor(rows_by_definition(now, ROW, COL, perm, np.arange(N)))
    e = rel(bag(ids, offs).detach(), F.embedding_bag(ids, want, offs, mode="sum"))
    report(f"forward after the steps uses the updated cores ({e:.1e})", e < 1e-5, f"{e}")
    # state_dict into a fresh module of the same shape
    fresh = ft.FPDEmbeddingBag(N, 12, mode="sum", layer=fpd.Layer.zeros(N, 12, ROW, COL, RANKS, P))
    fresh.load_state_dict(bag.state_dict())
    report("load_state_dict: same outputs, row_perm included", rel(fresh(ids, offs).detach(), bag(ids, offs).detach()) == 0.0, "")
    # deepcopy and torch.save/torch.load rebuild the engine; the copy trains on its own
    cp = copy.deepcopy(bag)
    buf = io.BytesIO()
    torch.save(bag, buf)
    buf.seek(0)
    ld = torch.load(buf)
    e1, e2 = rel(cp(ids, offs).detach(), bag(ids, offs).detach()), rel(ld(ids, offs).detach(), bag(ids, offs).detach())
    with torch.no_grad():
        cp.cores[0].mul_(0.0)
    report("deepcopy and torch.save/load: same outputs; the copy is independent",
           e1 == 0.0 and e2 == 0.0 and bag(ids, offs).abs().sum() > 0 and cp(ids, offs).abs().sum() == 0, f"{e1} {e2}")
    # .double(): parameters no longer share the layer's memory; values are copied in
    bd = copy.deepcopy(bag).double()
    od = bd(ids, offs)
    od.sum().backward()
    report(".double(): float64 output and gradients, same values",
           od.dtype == torch.float64 and bd.cores[0].grad.dtype == torch.float64 and
           rel(od.detach(), bag(ids, offs).detach()) < 1e-6, "")
    # sparse gradients
    sp = ft.FPDEmbeddingBag(N, 12, mode="sum", sparse=True, layer=bag._layer.clone())
    sp(ids, offs).pow(2).sum().backward()
    bag.zero_grad()
    bag(ids, offs).pow(2).sum().backward()
    ok = all(p.grad.is_sparse and rel(p.grad.to_dense(), q.grad) < 1e-6 for p, q in zip(sp.cores, bag.cores))
    torch.optim.SparseAdam(list(sp.parameters()), lr=0.01).step()
    report("sparse=True: sparse core gradients equal the dense ones; SparseAdam steps", ok, "")


def test_files(rng):
    W = torch.randn(3000, 16)
    bag = ft.FPDEmbeddingBag.from_pretrained(W, rank=4, mode="sum", epochs=0)
    rep = bag.fit_report
    rec = bag.layer.reconstruct()
    e = float(np.linalg.norm(rec.astype(np.float64) - W.double().numpy()) / np.linalg.norm(W.double().numpy()))
    report(f"from_pretrained: libfpd's fit, report's error is numpy's ({e:.5f})",
           abs(rep["rel_error_final"] - e) < 1e-5 and not any(p.requires_grad for p in bag.parameters()), str(rep))
    bag = ft.FPDEmbeddingBag.from_pretrained(W, freeze=False, rank=4, terms=2, mode="sum", epochs=0)
    report("from_pretrained freeze=False, terms=2", all(p.requires_grad for p in bag.parameters()) and
           bag.shape["terms"] == 2, str(bag.shape))
    ids, offs = torch.randint(0, 3000, (64,)), torch.arange(0, 64, 4)
    w2 = ft.FPDEmbeddingBag(3000, 16, mode="sum", _weight=W, rank=4, terms=2)
    w3 = ft.FPDEmbeddingBag.from_pretrained(W, rank=4, terms=2, mode="sum")
    report("_weight is fitted as from_pretrained does", rel(w2(ids, offs).detach(), w3(ids, offs).detach()) < 1e-6, "")
    opt = torch.optim.SGD(bag.parameters(), lr=0.01)
    bag(ids, offs).pow(2).sum().backward()
    opt.step()
    path = os.path.join(WORK, "m.fpd.safetensors")
    bag.save(path, "emb.weight", reference=W, tensors={"head": torch.ones(3)})
    header, meta, _ = read_safetensors(path)
    info = json.loads(meta["fpd.table.emb.weight"])
    now = bag.layer.reconstruct().astype(np.float64)
    want = float(np.linalg.norm(now - W.double().numpy()) / np.linalg.norm(W.double().numpy()))
    report(f"save after training: rel_error recomputed ({info['rel_error']:.6f} vs numpy {want:.6f}), fit '+torch'",
           abs(info["rel_error"] - want) < 1e-6 and info["fit"].endswith("+torch") and "head" in header, str(info))
    back = ft.FPDEmbeddingBag.from_file(path, mode="sum")
    report("from_file: same outputs as the saved module", rel(back(ids, offs).detach(), bag(ids, offs).detach()) == 0.0, "")
    p2 = os.path.join(WORK, "m2.fpd.safetensors")
    back.save(p2)
    info2 = json.loads(read_safetensors(p2)[1]["fpd.table.emb.weight"])
    report("save without a reference: rel_error null, not the stale value", info2["rel_error"] is None and
           info2["fit"].count("+torch") == 1, str(info2))


def test_load_any_encoding(rng):
    """load_embedding_bag on what fpd-compress writes: int8 and FPD tables of the sample."""
    import subprocess
    glove = os.path.join(ROOT, "samples", "glove-10k.safetensors")
    name = "word_embeddings.weight"
    ids, offs = torch.tensor([5, 9999, 5, 0]), torch.tensor([0, 2])
    for enc, extra in (("int8", []), ("fpd", ["--rank", "6", "--epochs", "0"])):
        path = os.path.join(WORK, f"g.{enc}.safetensors")
        r = subprocess.run([os.path.join(BUILD, "fpd-compress"), glove, "-o", path, "--encoding", enc, "--queries",
                            "0", "-q"] + extra, capture_output=True, text=True)
        if r.returncode != 0:
            report(f"fpd-compress --encoding {enc}", False, r.stderr[-300:])
            continue
        m = ft.load_embedding_bag(path, name, mode="sum")
        with fpd.open(path) as ck:
            W = torch.from_numpy(ck.dense(name))
        want = F.embedding_bag(ids, W, offs, mode="sum")
        kind = type(m).__name__
        report(f"load_embedding_bag {enc}: a {kind} whose sums are the table's rows",
               kind == ("EmbeddingBag" if enc == "int8" else "FPDEmbeddingBag") and
               rel(m(ids, offs).detach(), want) < 1e-5, kind)


def test_replace(rng):
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.big = nn.EmbeddingBag(20000, 32, mode="sum", padding_idx=0)
            self.towers = nn.ModuleDict({"item": nn.Embedding(8000, 32)})
            self.small = nn.Embedding(50, 8)
            self.head = nn.Linear(32, 1)

        def forward(self, u, i):
            return self.head(self.big(u) * self.towers["item"](i))

    model = Model()
    model.towers["item"].weight.requires_grad_(False)
    budget = 64 << 10
    rep = ft.replace_embeddings(model, budget=budget)
    by = {r["name"]: r for r in rep}
    ok = isinstance(model.big, ft.FPDEmbeddingBag) and isinstance(model.towers["item"], ft.FPDEmbedding) and \
        isinstance(model.small, nn.Embedding) and not by["small"]["replaced"]
    report("replace_embeddings: the two large tables replaced, the small one kept with a reason",
           ok and "50 rows" in by["small"]["reason"], str(rep))
    total = sum(r["bytes_after"] for r in rep if r["replaced"])
    params = sum(p.numel() * 4 for n, p in model.named_parameters() if "cores" in n)
    report(f"replace_embeddings: cores within the budget ({total} <= {budget}), as many bytes as the parameters",
           total <= budget and total == params, f"{total} {params}")
    report("replace_embeddings: options carried over (mode, padding_idx, frozen table)",
           model.big.mode == "sum" and model.big.padding_idx == 0 and
           not any(p.requires_grad for p in model.towers["item"].parameters()), "")
    m2 = nn.Sequential(nn.Embedding(30000, 16))
    nn.init.normal_(m2[0].weight, std=0.3)
    r2 = ft.replace_embeddings(m2, ratio=50, fit=False)
    std = float(m2[0].layer.reconstruct().std())
    report(f"replace_embeddings fit=False: ratio >= 50 ({r2[0]['ratio']:.0f}), random cores with the table's spread "
           f"(std {std:.3f} vs 0.3)", r2[0]["replaced"] and r2[0]["ratio"] >= 50 and abs(std - 0.3) < 0.01, str(r2))
    out = model(torch.randint(0, 20000, (8, 3)), torch.randint(0, 8000, (8,)))
    out.sum().backward()
    report("the model runs forward and backward", out.shape == (8, 1) and model.big.cores[0].grad is not None, "")


def test_gmf(rng):
    """GMF (NCF) in PyTorch with FPDEmbeddingBag tables: the logistic loss falls."""
    if RATINGS:
        raw = np.loadtxt(RATINGS, dtype=np.int64, skiprows=1, usecols=(0, 1), max_rows=200000)
        users, items = raw[:, 0] - raw[:, 0].min(), raw[:, 1] - raw[:, 1].min()
        src = f"MovieLens-1M ({len(users)} ratings)"
    else:
        # planted preferences: user u likes items of its own group
        users = rng.integers(0, 2000, 100000)
        items = (users % 20) * 150 + rng.integers(0, 150, users.size)
        src = "synthetic planted groups (no MovieLens found)"
    U, I, D = int(users.max()) + 1, int(items.max()) + 1, 16
    torch.manual_seed(0)
    ue = ft.FPDEmbeddingBag(U, D, mode="sum", rank=8, init_scale=0.1, seed=1)
    ie = ft.FPDEmbeddingBag(I, D, mode="sum", rank=8, init_scale=0.1, seed=2)
    head = nn.Linear(D, 1)
    opt = torch.optim.Adam(list(ue.parameters()) + list(ie.parameters()) + list(head.parameters()), lr=0.01)
    order = rng.permutation(users.size)
    B, neg, losses = 1024, 4, []
    for s in range(0, order.size - B + 1, B):
        q = order[s:s + B]
        u = np.repeat(users[q], 1 + neg)
        it = np.stack([items[q]] + [rng.integers(0, I, B) for _ in range(neg)], 1).reshape(-1)
        y = torch.tensor(np.tile([1.0] + [0.0] * neg, B), dtype=torch.float32)
        ut, itt = torch.tensor(u).reshape(-1, 1), torch.tensor(it).reshape(-1, 1)  # 2-D: bags of one
        logit = head(ue(ut) * ie(itt)).squeeze(1)
        loss = F.binary_cross_entropy_with_logits(logit, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = float(np.mean(losses[:10])), float(np.mean(losses[-10:]))
    report(f"GMF with FPDEmbeddingBag on {src}: loss {first:.3f} -> {last:.3f} in {len(losses)} Adam steps",
           last < first - 0.05 and np.isfinite(last), f"{losses[:3]} ... {losses[-3:]}")


def test_stored_e(rng):
    """free_stored=True: E of the free coordinates held as the file's int4-sym rows in an
    inference module; outputs (and per_sample_weights gradients) bit for bit those of the
    module with E in float32, which matches nn.EmbeddingBag over the rows by the
    definition; the buffer is the file's rows; state_dict, pickling, save; refusals."""
    c = 5
    cores = random_cores(rng, P, ROW, COL, RANKS)
    perm = rng.permutation(int(np.prod(ROW)))[:N]
    layer = fpd.Layer.from_cores(cores, N, perm)
    E, Pm = rng.standard_normal((N, c)).astype(np.float32), rng.standard_normal((c, 12)).astype(np.float32)
    layer.set_free_coords(c, E, Pm)
    path, path2 = os.path.join(WORK, "se.safetensors"), os.path.join(WORK, "se2.safetensors")
    fpd.save(path, {"emb": layer}, free_dtype="int4-sym")
    layer.set_free_coords(c, E[::-1].copy() * 0.5, Pm)
    fpd.save(path2, {"emb": layer}, free_dtype="int4-sym")
    h, _, d = read_safetensors(path)
    rb = (c + 1) // 2 + 2
    f32 = ft.FPDEmbeddingBag.from_file(path, mode="sum")
    st = ft.FPDEmbeddingBag.from_file(path, mode="sum", free_stored=True)
    report("stored: free is None, free_rows = the file's int4-sym rows, E and P take N row bytes + 4 c D",
           st.free is None and st.free_rows.dtype == torch.uint8 and tuple(st.free_rows.shape) == (N, rb) and
           np.array_equal(st.free_rows.numpy(), st_tensor(h, d, "emb.fpd.free")) and
           st.layer.free_memory_bytes == N * rb + 4 * c * 12 and not any(q.requires_grad for q in st.parameters()),
           f"{st.free_rows.shape} {st.layer.free_memory_bytes}")
    W = torch.tensor(rows_by_definition(cores, ROW, COL, perm, np.arange(N)) + f32.free.detach().double().numpy() @ Pm)
    ids, offs = torch.tensor([3, 7, 7, 50, 0, 54, 12]), torch.tensor([0, 2, 2, 5])
    psw = torch.rand(7)
    want = F.embedding_bag(ids, W, offs, mode="sum", per_sample_weights=psw.double())
    a, b = f32(ids, offs, psw).detach(), st(ids, offs, psw).detach()
    report(f"stored: the float32 module matches nn.EmbeddingBag over the definition ({rel(a, want):.1e})",
           rel(a, want) < 1e-5)
    report("stored: outputs are the float32 module's bit for bit (sum with weights, mean)",
           torch.equal(a, b) and torch.equal(ft.FPDEmbeddingBag.from_file(path, mode="mean", free_stored=True)(ids, offs),
                                              ft.FPDEmbeddingBag.from_file(path, mode="mean")(ids, offs).detach()))
    e32, est = ft.FPDEmbedding.from_file(path), ft.FPDEmbedding.from_file(path, free_stored=True)
    report("stored: FPDEmbedding too", torch.equal(e32(ids.reshape(1, 7)).detach(), est(ids.reshape(1, 7))))
    g = []
    for m in (f32, st):
        w = psw.clone().requires_grad_(True)
        m(ids, offs, w).pow(2).sum().backward()
        g.append(w.grad)
    report("stored: per_sample_weights gradients are the float32 module's", torch.equal(g[0], g[1]))
    report("stored: repr names the kind", "free_stored='int4-sym'" in repr(st), repr(st))
    sd = st.state_dict()
    report("stored: state_dict has free_rows and free_proj, not free",
           "free_rows" in sd and "free_proj" in sd and "free" not in sd, str(list(sd)))
    other = ft.FPDEmbeddingBag.from_file(path2, mode="sum", free_stored=True)
    before = st(ids, offs).detach()
    st.load_state_dict(other.state_dict())
    report("stored: load_state_dict of another table's rows: its outputs (rows checked and taken)",
           torch.equal(st(ids, offs), other(ids, offs)) and not torch.equal(before, other(ids, offs)))
    report("stored: the buffer still views the layer's rows after load_state_dict",
           st.free_rows.data_ptr() == st.layer.free_stored_rows.ctypes.data)
    buf = io.BytesIO()
    torch.save(st, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=False)
    cp = copy.deepcopy(st)
    report("stored: torch.save/load and deepcopy keep the rows, shared with the layer",
           back._layer.free_stored == "int4-sym" and torch.equal(back(ids, offs), other(ids, offs)) and
           torch.equal(cp(ids, offs), other(ids, offs)) and
           back.free_rows.data_ptr() == back.layer.free_stored_rows.ctypes.data)
    out = os.path.join(WORK, "se-saved.safetensors")
    back.save(out)
    h3, m3, d3 = read_safetensors(out)
    report("stored: save writes the rows byte for byte, as int4-sym",
           np.array_equal(st_tensor(h3, d3, "emb.fpd.free"), st_tensor(*read_safetensors(path2)[::2], "emb.fpd.free"))
           and json.loads(m3["fpd.table.emb"])["free_dtype"] == "int4-sym", m3.get("fpd.table.emb", ""))
    with torch.no_grad():
        cp.free_rows[4, rb - 2:] = torch.tensor([0x00, 0x7E], dtype=torch.uint8)  # row 4's F16 scale: NaN
    expect_raise("stored: a NaN scale written into free_rows is refused at the next forward, naming row 4",
                 fpd.FPDError, lambda: cp(ids, offs), "free_rows: free coordinates as stored: row 4")
    expect_raise("stored: freeze=False is refused, naming expand_free", ValueError,
                 lambda: ft.FPDEmbeddingBag.from_file(path, free_stored=True, freeze=False), "expand_free")
    st.free_proj.requires_grad_(True)
    expect_raise("stored: training through it is refused, saying what to do at module level", RuntimeError,
                 lambda: st(ids, offs).sum().backward(), "to train, load it without free_stored=True")
    lb = ft.load_embedding_bag(path, "emb", mode="sum", free_stored=True)
    report("load_embedding_bag(free_stored=True): a stored FPDEmbeddingBag", lb._free_kind == "int4-sym")
    st2 = ft.FPDEmbeddingBag.from_file(path, mode="sum", free_stored=True)
    st2._layer.expand_free()
    expect_raise("stored: E expanded under the module: forward refused, saying to make a new module", RuntimeError,
                 lambda: st2(ids, offs), "make a new module")
    expect_raise("stored: E expanded under the module: state_dict refused (the buffer would read freed memory)",
                 RuntimeError, lambda: st2.state_dict(), "changed under it")
    # save() keeps the file's kind: a module read from an int4-sym file without free_stored
    p4 = os.path.join(WORK, "se-f32-saved.safetensors")
    f32.save(p4)
    h4, m4, d4 = read_safetensors(p4)
    report("save of a module read from an int4-sym file keeps E as int4-sym rows (the file's kind)",
           json.loads(m4["fpd.table.emb"])["free_dtype"] == "int4-sym" and
           np.array_equal(st_tensor(h4, d4, "emb.fpd.free"), st_tensor(h, d, "emb.fpd.free")), m4.get("fpd.table.emb"))
    p5 = os.path.join(WORK, "se-core.safetensors")
    f32.save(p5, free_dtype="core")
    report("save(free_dtype='core') writes E in F32", read_safetensors(p5)[0]["emb.fpd.free"]["dtype"] == "F32")
    report("repr shows c of a float32-E module", "free_coords=5" in repr(f32) and "free_stored" not in repr(f32),
           repr(f32))
    # Layer.set_free_stored: uint8 only; P None keeps the layer's P
    lay = st.layer.clone()
    rows = lay.free_stored_rows.copy()
    expect_raise("set_free_stored refuses rows that are not uint8 (no silent cast)", TypeError,
                 lambda: lay.set_free_stored("int4-sym", rows.astype(np.float32)), "uint8")
    before = lay.lookup(np.arange(N))
    lay.set_free_stored("int4-sym", rows[::-1].copy())
    rev = lay.clone()
    rev.expand_free()
    report("set_free_stored without P keeps the layer's P (E replaced)",
           np.array_equal(lay.free_p, st.layer.free_p) and not np.array_equal(lay.lookup(np.arange(N)), before) and
           np.array_equal(lay.lookup(np.arange(N)), rev.lookup(np.arange(N))))


def main():
    print(f"# torch {torch.__version__}, libfpd {fpd.version()} at {fpd.library_path()}", file=sys.stderr)
    rng = np.random.default_rng(5)
    for t in (test_forward_backward, test_gradcheck, test_embedding, test_errors, test_training_state, test_files,
              test_load_any_encoding, test_replace, test_gmf, test_stored_e):
        try:
            t(rng)
        except Exception:  # a crash of one group is a failure; the others still run
            import traceback
            report(f"{t.__name__} ran", False, traceback.format_exc()[-1000:])
    return finish()


if __name__ == "__main__":
    sys.exit(main())
