"""Free coordinates per row (format extension free/1; row i = FPD(i) + E[i] P) in the
fpd package and fpd.torch, against references computed here from the definition
(tests/python/reference.py's rows plus E P, autograd of a double reconstruction).

Usage: python3 tests/python/test_free.py BUILD_DIR ROOT   (torch is optional: its
checks are skipped loudly without it)."""
import os
import pickle
import sys
import tempfile

import numpy as np

BUILD, ROOT = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
sys.path.insert(0, os.path.join(ROOT, "tools", "python"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("FPD_LIBRARY", os.path.join(BUILD, "libfpd.so"))

import fpd  # noqa: E402
from reference import finish, random_cores, read_safetensors, rel, report, rows_by_definition, skip, st_tensor  # noqa: E402

WORK = tempfile.mkdtemp(prefix="fpd-freetest-")
ROW, COL, RANKS, P, N, C = [4, 3, 5], [2, 3, 2], [1, 3, 2, 1], 2, 55, 3


def make(rng):
    cores = random_cores(rng, P, ROW, COL, RANKS)
    perm = rng.permutation(int(np.prod(ROW)))[:N]
    layer = fpd.Layer.from_cores(cores, N, perm)
    E = rng.standard_normal((N, C)).astype(np.float32)
    Pm = rng.standard_normal((C, 12)).astype(np.float32)
    layer.set_free_coords(C, E, Pm)
    W = rows_by_definition(cores, ROW, COL, perm, np.arange(N)) + E.astype(np.float64) @ Pm
    return layer, cores, perm, E, Pm, W


def test_numpy(rng):
    layer, cores, perm, E, Pm, W = make(rng)
    report("Layer.free_coords, free_e, free_p hold what was set",
           layer.free_coords == C and np.array_equal(layer.free_e, E) and np.array_equal(layer.free_p, Pm))
    ids = np.array([0, 54, 17, 17, 3])
    e1, e2 = rel(layer.lookup(ids), W[ids]), rel(layer.reconstruct(), W)
    report(f"lookup and reconstruct = FPD rows + E P by the definition ({e1:.1e}, {e2:.1e})", e1 < 1e-5 and e2 < 1e-5)
    report("param_count = cores + c (rows + dim)",
           layer.param_count == layer.params + C * (N + 12), f"{layer.param_count} {layer.params}")
    back = pickle.loads(pickle.dumps(layer))
    report("pickling keeps E and P", np.array_equal(back.free_e, E) and np.array_equal(back.free_p, Pm))
    path = os.path.join(WORK, "free.safetensors")
    fpd.save(path, {"emb": layer})
    hdr, meta, data = read_safetensors(path)
    ok = meta.get("fpd.extensions") == "free/1" and '"free_coords":3' in meta.get("fpd.table.emb", "") and \
        np.array_equal(st_tensor(hdr, data, "emb.fpd.free"), E) and \
        np.array_equal(st_tensor(hdr, data, "emb.fpd.free_proj"), Pm)
    report("fpd.save writes free/1: fpd.extensions, T.fpd.free, T.fpd.free_proj (read back with NumPy)", ok)
    with fpd.Checkpoint(path) as ck:
        l2 = ck.load_layer("emb")
    report("Checkpoint.load_layer reads them back", l2.free_coords == C and np.array_equal(l2.free_e, E) and
           np.array_equal(l2.reconstruct(), layer.reconstruct()))
    # fit: the residual's top directions
    Wt = rng.standard_normal((200, 12)).astype(np.float32)
    l3, rep = fpd.fit(Wt, shape={"row_shape": [10, 20], "col_shape": [4, 3], "ranks": [1, 2, 1]}, free_coords=2)
    report(f"fit(free_coords=2): rel_error {rep['rel_error_final']:.3f} -> {rep['rel_error_free']:.3f}",
           l3.free_coords == 2 and rep["rel_error_free"] < rep["rel_error_final"] and
           abs(l3.error(Wt)["rel_error"] - rep["rel_error_free"]) < 1e-5)


def table_double(torch, cores, perm, rows):
    out = 0
    for t in range(cores[0].shape[0]):
        acc = cores[0][t][:, 0]
        for c in cores[1:]:
            g = c[t]
            x = torch.einsum("ajr,brds->abjds", acc, g)
            acc = x.reshape(x.shape[0] * x.shape[1], x.shape[2] * x.shape[3], x.shape[4])
        out = out + acc[:, :, 0]
    return out[torch.as_tensor(perm, dtype=torch.long)]


def test_torch_module(rng):
    try:
        import torch
        import torch.nn.functional as F
        import fpd.torch as ft
    except ImportError:
        skip("fpd.torch with free coordinates", "no torch for this interpreter")
        return
    for sparse in (False, True):
        layer, cores, perm, E, Pm, W = make(rng)
        bag = ft.FPDEmbeddingBag(N, 12, mode="sum", layer=layer, sparse=sparse)
        names = [n for n, _ in bag.named_parameters()]
        report(f"sparse={sparse}: parameters cores.0-2, free, free_proj",
               sorted(names) == ["cores.0", "cores.1", "cores.2", "free", "free_proj"], str(names))
        ids = torch.tensor(rng.integers(0, N, 20))
        ids[[2, 9]] = 7
        offs = torch.tensor([0, 4, 4, 11])
        w = torch.tensor(rng.standard_normal(20), dtype=torch.float32)
        out = bag(ids, offs, per_sample_weights=w)
        want = F.embedding_bag(ids, torch.tensor(W), offs, mode="sum", per_sample_weights=w.double())
        e = rel(out.detach(), want)
        report(f"sparse={sparse}: forward = embedding_bag of FPD rows + E P ({e:.1e})", e < 1e-5)
        g = torch.tensor(rng.standard_normal(tuple(out.shape)), dtype=torch.float32)
        (out * g).sum().backward()
        cd = [torch.tensor(c, dtype=torch.float64, requires_grad=True) for c in cores]
        Ed = torch.tensor(E, dtype=torch.float64, requires_grad=True)
        Pd = torch.tensor(Pm, dtype=torch.float64, requires_grad=True)
        Wd = table_double(torch, cd, perm, N) + Ed @ Pd
        od = F.embedding_bag(ids, Wd, offs, mode="sum", per_sample_weights=w.double())
        (od * g.double()).sum().backward()
        ge = bag.free.grad.to_dense() if bag.free.grad.is_sparse else bag.free.grad
        errs = [rel(bag.cores[m].grad.to_dense() if sparse else bag.cores[m].grad, cd[m].grad) for m in range(3)]
        errs += [rel(ge, Ed.grad), rel(bag.free_proj.grad, Pd.grad)]
        report(f"sparse={sparse}: backward of cores, E, P = autograd of the double reference (max {max(errs):.1e})",
               max(errs) < 1e-4, str(errs))
        if sparse:
            idx = bag.free.grad.coalesce().indices()[0].numpy()
            report("sparse: dE lists exactly the looked-up rows", np.array_equal(np.sort(idx), np.unique(ids.numpy())),
                   f"{idx} {np.unique(ids.numpy())}")
        # an optimizer step changes the layer's own E (shared memory)
        opt = torch.optim.SGD([bag.free, bag.free_proj], lr=0.1) if not sparse else \
            torch.optim.SGD([bag.free_proj], lr=0.1)
        before = bag.layer.free_p.copy()
        opt.step()
        after = bag.layer.free_p
        e = rel(after, before - 0.1 * Pd.grad.numpy())
        report(f"sparse={sparse}: an SGD step on free_proj is the layer's P ({e:.1e})", e < 1e-5)


def main():
    rng = np.random.default_rng(11)
    for t in (test_numpy, test_torch_module):
        try:
            t(rng)
        except Exception:
            import traceback
            report(f"{t.__name__} ran", False, traceback.format_exc()[-1500:])
    return finish()


if __name__ == "__main__":
    sys.exit(main())
