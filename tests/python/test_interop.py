#!/usr/bin/env python3
"""Python interop of FPD checkpoints (run by tests/cli/test-convert.sh; needs numpy and
safetensors, skips the torch part without torch).

Loads compressed checkpoints with the `safetensors` package, reconstructs rows in NumPy
from the cores by the design's definition (written here, independently of the C code
and of samples/pytorch/fpd_embedding.py), and matches the C look-ups: the dense
checkpoint that fpd-convert writes with fpd_checkpoint_load_layer + fpd_layer_reconstruct.
Then checks the sample PyTorch module's NumPy path (rows, EmbeddingBag pooling), the
TT-Rec export against FBTT-Embedding's own full_weight() algorithm, a hand-made
checkpoint (p = 2, F16 cores, row_perm) written by Python and read by C, and, with
torch, the module's forward and backward.

Usage: test_interop.py BUILD_DIR ROOT_DIR [NCF_CHECKPOINT]
Prints "ok NAME", "not ok NAME: why" or "skip NAME: why" per check; exits 1 on a failure.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

BUILD, ROOT = sys.argv[1], sys.argv[2]
NCF = sys.argv[3] if len(sys.argv) > 3 and os.path.exists(sys.argv[3]) else None
sys.path.insert(0, os.path.join(ROOT, "samples", "pytorch"))
import fpd_embedding as fe  # noqa: E402

failures = 0


def report(name, ok, why=""):
    global failures
    if ok:
        print(f"ok {name}")
    else:
        failures += 1
        print(f"not ok {name}: {why}")


def tool(*args):
    r = subprocess.run([os.path.join(BUILD, args[0])] + list(args[1:]), capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def metadata(path):
    with safe_open(path, framework="np") as f:
        return f.metadata() or {}


def rows_by_definition(cores, row_shape, col_shape, perm, idx):
    """W[i, :] for original rows idx, double precision, from DESIGN.md section 2: per term,
    the product of the matrices G_m[t, i_m, :, j_m, :] for each column j (loops over the
    column digits, no einsum, so it shares nothing with the code under test)."""
    k, p, D = len(cores), cores[0].shape[0], int(np.prod(col_shape))
    out = np.zeros((len(idx), D))
    for b, i in enumerate(idx):
        s = int(perm[i]) if perm is not None else int(i)
        dig = []
        for n in reversed(row_shape):
            dig.append(s % n)
            s //= n
        dig = dig[::-1]
        for j in range(D):
            jd, r = [], j
            for d in reversed(col_shape):
                jd.append(r % d)
                r //= d
            jd = jd[::-1]
            for t in range(p):
                v = np.ones((1, 1))
                for m in range(k):
                    v = v @ cores[m][t, dig[m], :, jd[m], :].astype(np.float64)
                out[b, j] += v[0, 0]
    return out


def check_checkpoint(label, fpd_path, work):
    dense_path = os.path.join(work, label + ".dense.safetensors")
    tool("fpd-convert", fpd_path, "-o", dense_path, "--force", "-q")
    tensors = load_file(fpd_path)
    dense = load_file(dense_path)
    meta = metadata(fpd_path)
    rng = np.random.default_rng(0)
    for key in sorted(meta):
        if not key.startswith("fpd.table."):
            continue
        name = key[len("fpd.table."):]
        info = json.loads(meta[key])
        k = len(info["row_shape"])
        cores = [tensors[f"{name}.fpd.core{m}"] for m in range(k)]
        perm = tensors.get(f"{name}.fpd.row_perm")
        W = dense[name]
        ok = W.shape == (info["rows"], info["dim"])
        report(f"{label}: '{name}' dense shape {W.shape} from fpd-convert", ok, f"metadata says {info['rows']}x{info['dim']}")
        idx = np.unique(np.concatenate([[0, info["rows"] - 1], rng.integers(0, info["rows"], 40)]))
        ref = rows_by_definition(cores, info["row_shape"], info["col_shape"], perm, idx)
        got = W[idx].astype(np.float64)
        scale = max(np.abs(ref).max(), 1e-30)
        err = np.abs(got - ref).max() / scale
        report(f"{label}: '{name}' C rows match the NumPy definition (max rel. diff {err:.1e})", err < 2e-6, f"{err}")
        # the sample module (NumPy path), on all rows
        table = fe.load_fpd_table(fpd_path, name)
        mine = fe.reconstruct_rows(table, np.arange(info["rows"]))
        err2 = np.abs(mine - W.astype(np.float64)).max() / max(np.abs(W).max(), 1e-30)
        report(f"{label}: '{name}' fpd_embedding.reconstruct_rows matches C on all {info['rows']} rows ({err2:.1e})",
               err2 < 2e-6, f"{err2}")
        # EmbeddingBag pooling against the C rows
        inp = rng.integers(0, info["rows"], 23)
        offs = np.array([0, 3, 3, 10, 22])  # an empty bag included
        Wd = W.astype(np.float64)
        for mode in ("sum", "mean"):
            got = fe.embedding_bag_numpy(table, inp, offs, mode=mode)
            ends = list(offs[1:]) + [len(inp)]
            want = np.stack([(Wd[inp[s:e]].sum(0) / (max(e - s, 1) if mode == "mean" else 1)) if e > s
                             else np.zeros(info["dim"]) for s, e in zip(offs, ends)])
            e3 = np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)
            report(f"{label}: '{name}' embedding_bag_numpy mode={mode}", e3 < 2e-6, f"{e3}")
        w = rng.standard_normal(len(inp))
        got = fe.embedding_bag_numpy(table, inp, offs, mode="sum", per_sample_weights=w)
        ends = list(offs[1:]) + [len(inp)]
        want = np.stack([(Wd[inp[s:e]] * w[s:e, None]).sum(0) if e > s else np.zeros(info["dim"])
                         for s, e in zip(offs, ends)])
        e4 = np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)
        report(f"{label}: '{name}' embedding_bag_numpy per_sample_weights", e4 < 2e-6, f"{e4}")
    # every other tensor copied byte for byte
    src_tensors = {k: v for k, v in tensors.items() if ".fpd." not in k}
    same = all(k in dense and dense[k].dtype == v.dtype and dense[k].tobytes() == v.tobytes() for k, v in src_tensors.items())
    report(f"{label}: other tensors copied byte for byte by fpd-convert", same, str(sorted(src_tensors)))
    return tensors, dense, meta


def fbtt_full_weight(tt_p, tt_q, tt_ranks, tt_cores):
    """FBTT-Embedding's tt_matrix_to_full(..., tt_permute=[1, 0, 2, 3]) in NumPy
    (tt_embeddings_ops.py): view core i as [p_i, r_i, q_i, r_{i+1}], permute to
    [r_i, p_i, q_i, r_{i+1}], multiply the chain, permute (p..., q...) and reshape."""
    k = len(tt_p)
    ranks = [1] + list(tt_ranks) + [1]
    cs = [c.reshape(tt_p[i], ranks[i], tt_q[i], ranks[i + 1]).transpose(1, 0, 2, 3).astype(np.float64)
          for i, c in enumerate(tt_cores)]
    res = cs[0]
    for i in range(1, k):
        res = res.reshape(-1, ranks[i]) @ cs[i].reshape(ranks[i], -1)
    inter = []
    for i in range(k):
        inter += [tt_p[i], tt_q[i]]
    res = res.reshape(inter).transpose(list(range(0, 2 * k, 2)) + list(range(1, 2 * k, 2)))
    return res.reshape(int(np.prod(tt_p)), int(np.prod(tt_q)))


def main():
    work = tempfile.mkdtemp(prefix="fpd-py-")
    glove = os.path.join(ROOT, "samples", "glove-10k.safetensors")
    g = os.path.join(work, "glove.fpd.safetensors")
    tool("fpd-compress", glove, "-o", g, "--rank", "6", "--epochs", "0", "-q")
    _, gdense, gmeta = check_checkpoint("glove", g, work)

    # TT-Rec export, read back by FBTT-Embedding's own reconstruction algorithm
    tt = os.path.join(work, "glove.ttrec.safetensors")
    tool("fpd-convert", g, "-o", tt, "--to", "ttrec", "-q")
    t2 = load_file(tt)
    m = json.loads(metadata(tt)["ttrec.table.word_embeddings"])
    cores = [t2[f"word_embeddings.tt_cores.{i}"] for i in range(len(m["tt_p_shapes"]))]
    shapes_ok = all(c.shape == (1, m["tt_p_shapes"][i],
                                ([1] + m["tt_ranks"] + [1])[i] * m["tt_q_shapes"][i] * ([1] + m["tt_ranks"] + [1])[i + 1])
                    for i, c in enumerate(cores))
    report("ttrec: tt_cores[i] are [1, p_i, r_i*q_i*r_{i+1}] F32", shapes_ok and all(c.dtype == np.float32 for c in cores),
           str([c.shape for c in cores]))
    full = fbtt_full_weight(m["tt_p_shapes"], m["tt_q_shapes"], m["tt_ranks"], [c[0] for c in cores])
    W = gdense["word_embeddings.weight"].astype(np.float64)
    e = np.abs(full[: W.shape[0]] - W).max() / np.abs(W).max()
    report(f"ttrec: FBTT full_weight() of the export equals our dense rows ({e:.1e})", e < 2e-6, f"{e}")

    # a hand-made checkpoint: p = 2, k = 2, F16 cores, a row permutation, written by Python
    rng = np.random.default_rng(7)
    N, rs, cs, ranks, p = 50, [8, 7], [3, 2], [1, 3, 1], 2
    hc = [rng.standard_normal((p, rs[mm], ranks[mm], cs[mm], ranks[mm + 1])).astype(np.float16) for mm in range(2)]
    perm = rng.permutation(56)[:N].astype(np.int64)
    info = {"rows": N, "dim": 6, "row_shape": rs, "col_shape": cs, "ranks": ranks, "terms": p,
            "source_dtype": "F64", "core_dtype": "F16", "fit": "python", "seed": 0, "rel_error": None}
    hand = os.path.join(work, "hand.fpd.safetensors")
    save_file({"T.fpd.core0": hc[0], "T.fpd.core1": hc[1], "T.fpd.row_perm": perm, "other": np.arange(5, dtype=np.int32)},
              hand, metadata={"fpd.version": "1", "fpd.table.T": json.dumps(info)})
    hd = os.path.join(work, "hand.dense.safetensors")
    tool("fpd-convert", hand, "-o", hd, "-q")
    Wh = load_file(hd)["T"]
    ref = rows_by_definition(hc, rs, cs, perm, np.arange(N))
    report("python-written FPD (p=2, F16 cores, row_perm): C output dtype is the source dtype F64",
           Wh.dtype == np.float64, str(Wh.dtype))
    eh = np.abs(Wh - ref).max() / np.abs(ref).max()
    report(f"python-written FPD (p=2, F16 cores, row_perm): C rows match the definition ({eh:.1e})", eh < 2e-6, f"{eh}")
    th = fe.load_fpd_table(hand, "T")
    report("python-written FPD: fpd_embedding rows match",
           np.abs(fe.reconstruct_rows(th, np.arange(N)) - ref).max() / np.abs(ref).max() < 1e-12, "")
    # save_fpd (NumPy path) writes a file that C reads back to the same rows
    sv = os.path.join(work, "saved.fpd.safetensors")
    fe.save_fpd(sv, {"T": th})
    sd = os.path.join(work, "saved.dense.safetensors")
    tool("fpd-convert", sv, "-o", sd, "-q", "--dtype", "F32")
    es = np.abs(load_file(sd)["T"].astype(np.float64) - ref).max() / np.abs(ref).max()
    report(f"save_fpd output is read by C to the same rows ({es:.1e})", es < 2e-6, f"{es}")

    if NCF:
        n = os.path.join(work, "ncf.fpd.safetensors")
        tool("fpd-compress", NCF, "-o", n, "--rank", "4", "--terms", "2", "--epochs", "0", "-q")
        check_checkpoint("ncf", n, work)
    else:
        print("skip ncf: checkpoint not found")

    try:
        import torch
    except ImportError:
        print("skip torch: torch is not installed (FPDEmbeddingBag forward/backward not checked)")
        torch = None
    if torch is not None:
        bag = fe.FPDEmbeddingBag.from_file(g, "word_embeddings.weight", mode="sum")
        table = fe.load_fpd_table(g, "word_embeddings.weight")
        inp = torch.tensor(rng.integers(0, 10000, 30))
        offs = torch.tensor([0, 5, 5, 17])
        w = torch.tensor(rng.standard_normal(30), dtype=torch.float32)
        out = bag(inp, offs, per_sample_weights=w)
        want = fe.embedding_bag_numpy(table, inp.numpy(), offs.numpy(), mode="sum", per_sample_weights=w.numpy())
        et = np.abs(out.detach().double().numpy() - want).max() / np.abs(want).max()
        report(f"torch: FPDEmbeddingBag forward equals NumPy ({et:.1e})", et < 1e-5, f"{et}")
        out.sum().backward()
        report("torch: gradients reach every core", all(c.grad is not None and torch.isfinite(c.grad).all() for c in bag.cores), "")
        mean = fe.FPDEmbeddingBag.from_file(g, "word_embeddings.weight", mode="mean")
        x2 = torch.tensor(rng.integers(0, 10000, (4, 3)))
        o2 = mean(x2).detach().double().numpy()
        w2 = fe.embedding_bag_numpy(table, x2.numpy(), mode="mean")
        report("torch: 2-D input, mode mean", np.abs(o2 - w2).max() / np.abs(w2).max() < 1e-5, "")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
