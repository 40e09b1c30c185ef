#!/usr/bin/env python3
"""Tests of the fpd package's NumPy layer (tools/python/fpd) against libfpd.so.

Usage: test_fpd.py BUILD_DIR ROOT_DIR [DATA_DIR]   (run by tests/cli/test-python.sh; needs numpy;
DATA_DIR, default $FPD_DATA_DIR or ROOT/../shared/data, holds the NCF checkpoint)
Prints "ok NAME" / "not ok NAME: why" / "skip NAME: why"; exits 1 on a failure.

Every value is checked against a reference computed here or in reference.py
(DESIGN.md section 2 by loops, in double; the safetensors bytes parsed by hand), never
against the package itself: ctypes struct layouts against the C compiler's offsetof,
look-ups and EmbeddingBag forward/backward against the definition, optimizer steps
against their closed forms, fits against numpy's own error, checkpoints against the
bytes on disk, the heuristic against the ranking documented in fpd-heuristics.h.
"""
import ctypes
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

BUILD, ROOT = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
DATA = sys.argv[3] if len(sys.argv) > 3 else os.environ.get("FPD_DATA_DIR") or os.path.join(ROOT, "..", "shared", "data")
sys.path.insert(0, os.path.join(ROOT, "tools", "python"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("FPD_LIBRARY", os.path.join(BUILD, "libfpd.so"))

import fpd  # noqa: E402
from fpd import _lib  # noqa: E402
from reference import (bags_of, core_grads_by_definition, entry_coefs, finish, pool, random_cores,  # noqa: E402
                       read_safetensors, rel, report, rows_by_definition, skip, st_tensor)

WORK = tempfile.mkdtemp(prefix="fpd-pytest-")


def test_layouts():
    """Every ctypes struct against the compiler: sizeof, and offsetof / sizeof of each field."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if not cc:
        skip("ctypes layouts", "no C compiler to compare with")
        return
    lines = ['#include <stdio.h>', '#include <stddef.h>', '#include "lib/fpd.h"', '#include "formats/fpd-formats.h"',
             '#include "heuristics/fpd-heuristics.h"', "int main(void) {"]
    want = {}
    for cname, cls in _lib.STRUCTS.items():
        lines.append(f'printf("{cname} sizeof %zu\\n", sizeof(struct {cname}));')
        want[f"{cname} sizeof"] = ctypes.sizeof(cls)
        for f, _ in cls._fields_:
            lines.append(f'printf("{cname} {f} %zu %zu\\n", offsetof(struct {cname}, {f}), '
                         f'sizeof(((struct {cname} *)0)->{f}));')
            want[f"{cname} {f}"] = f"{getattr(cls, f).offset} {getattr(cls, f).size}"
    consts = {"FPD_MAX_DIMS": _lib.MAX_DIMS, "FPD_MAX_MODES": _lib.MAX_MODES, "FPD_DTYPE_COUNT": len(_lib.DTYPES),
              "FPD_DTYPE_BF16": _lib.DTYPE["BF16"], "FPD_DTYPE_I64": _lib.DTYPE["I64"],
              "FPD_DTYPE_C64": _lib.DTYPE["C64"], "FPD_STATUS_COUNT": len(fpd.Status),
              "FPD_STATUS_INVALID_ARG": fpd.Status.INVALID_ARG, "FPD_STATUS_CANCELLED": fpd.Status.CANCELLED,
              "FPD_BAG_MODE_SUM": 0, "FPD_BAG_MODE_MEAN": 1, "FPD_BAG_MODE_NONE": 2, "FPD_BAG_MODE_COUNT": 3,
              "FPD_OPTIMIZER_KIND_SGD": 0, "FPD_OPTIMIZER_KIND_ROWWISE_ADAGRAD": 1, "FPD_OPTIMIZER_KIND_ADAM": 2,
              "FPD_OPTIMIZER_KIND_LAZY_ADAM": 3, "FPD_INIT_KIND_NORMAL": 0, "FPD_INIT_KIND_UNIFORM": 1,
              "FPD_WRITE_OVERWRITE": _lib.WRITE_OVERWRITE}
    for c, v in consts.items():
        lines.append(f'printf("{c} %lld\\n", (long long)({c}));')
        want[c] = int(v)
    lines.append("return 0; }")
    src, exe = os.path.join(WORK, "layout.c"), os.path.join(WORK, "layout")
    with open(src, "w") as f:
        f.write("\n".join(lines))
    r = subprocess.run([cc, "-std=c11", "-I", ROOT, "-I", os.path.join(ROOT, "lib"), src, "-o", exe],
                       capture_output=True, text=True)
    if r.returncode != 0:
        report("ctypes layouts: the C program compiles", False, r.stderr[-600:])
        return
    got = {}
    for line in subprocess.run([exe], capture_output=True, text=True, check=True).stdout.splitlines():
        parts = line.split()
        if parts[0].startswith("FPD_"):
            got[parts[0]] = int(parts[1])
        elif parts[1] == "sizeof":
            got[f"{parts[0]} sizeof"] = int(parts[2])
        else:
            got[f"{parts[0]} {parts[1]}"] = f"{parts[2]} {parts[3]}"
    bad = [f"{k}: C {got.get(k)} vs ctypes {v}" for k, v in want.items() if got.get(k) != v]
    report(f"ctypes layouts: {len(_lib.STRUCTS)} structs, {len(want)} sizes/offsets/constants equal the C "
           "compiler's", not bad, "; ".join(bad[:6]))


def test_loader():
    import re
    with open(os.path.join(ROOT, "lib", "fpd.h")) as f:
        want = re.search(r'#define FPD_VERSION_STRING "([^"]+)"', f.read()).group(1)
    report(f"library found ({fpd.library_path()}), version {fpd.version()} as lib/fpd.h says",
           fpd.version() == want and "cpu" in fpd.build_features().split(), fpd.build_features())
    env = dict(os.environ, FPD_LIBRARY=os.path.join(WORK, "missing", "libfpd.so"),
               PYTHONPATH=os.path.join(ROOT, "tools", "python"))
    r = subprocess.run([sys.executable, "-c", "import fpd; fpd.version()"], env=env, capture_output=True, text=True)
    report("FPD_LIBRARY naming a missing file: OSError naming it (no silent fallback)",
           r.returncode != 0 and "OSError" in r.stderr and "missing/libfpd.so" in r.stderr, r.stderr[-300:])
    if os.path.realpath(BUILD) == os.path.realpath(os.path.join(ROOT, "build")):
        env.pop("FPD_LIBRARY")
        r = subprocess.run([sys.executable, "-c", "import fpd; print(fpd.library_path())"], env=env,
                           capture_output=True, text=True)
        report("without FPD_LIBRARY, the source tree's build/libfpd.so is used",
               r.stdout.strip() == os.path.join(ROOT, "build", "libfpd.so"), r.stdout + r.stderr[-300:])
    else:
        skip("source tree's build/libfpd.so found", f"BUILD_DIR {BUILD} is not ROOT/build")


def test_errors():
    try:
        fpd.open(os.path.join(WORK, "nope.safetensors"))
        report("open a missing file raises FPDError", False, "no exception")
    except fpd.FPDError as e:
        report("open a missing file: FPDError, status IO, message names the file, is a RuntimeError",
               e.status == fpd.Status.IO and "nope.safetensors" in e.message and isinstance(e, RuntimeError), repr(e))
    try:
        fpd.Layer.zeros(100, 6, [5, 5], [2, 3], [1, 2, 1])  # 25 < 100 rows
        report("a shape not covering its rows raises FPDError", False, "no exception")
    except fpd.FPDError as e:
        report("a shape not covering its rows: FPDError status SHAPE", e.status == fpd.Status.SHAPE, repr(e))
    bad = os.path.join(WORK, "bad.safetensors")
    with open(bad, "wb") as f:
        f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    try:
        fpd.open(bad)
        report("a malformed file raises FPDError", False, "no exception")
    except fpd.FPDError as e:
        report("a malformed file: FPDError status FORMAT", e.status == fpd.Status.FORMAT, repr(e))


def make_layer(rng, p=2, row_shape=(4, 3, 5), col_shape=(2, 3, 2), ranks=(1, 3, 2, 1), rows=55, perm=True):
    cores = random_cores(rng, p, row_shape, col_shape, ranks)
    pm = rng.permutation(int(np.prod(row_shape)))[:rows] if perm else None
    return fpd.Layer.from_cores(cores, rows, pm), cores, pm


def test_layer(rng):
    layer, cores, pm = make_layer(rng)
    s = layer.shape
    report("from_cores: shape", (s["rows"], s["dim"], s["k"], s["terms"], s["row_shape"], s["col_shape"], s["ranks"])
           == (55, 12, 3, 2, [4, 3, 5], [2, 3, 2], [1, 3, 2, 1]), str(s))
    report("cores are the given values", all(np.array_equal(a, b) for a, b in zip(layer.cores, cores)), "")
    report("row_perm round trip", np.array_equal(layer.row_perm, pm), "")
    idx = np.array([0, 54, 7, 7, 31, 2])
    ref = rows_by_definition(cores, [4, 3, 5], [2, 3, 2], pm, idx)
    e = rel(layer.lookup(idx), ref)
    report(f"lookup equals the definition (p=2, k=3, row_perm; {e:.1e})", e < 1e-5, f"{e}")
    e2 = rel(layer.reconstruct(), rows_by_definition(cores, [4, 3, 5], [2, 3, 2], pm, np.arange(55)))
    report(f"reconstruct equals the definition on all rows ({e2:.1e})", e2 < 1e-5, f"{e2}")
    report("lookup keeps the ids' shape", layer.lookup(idx.reshape(2, 3)).shape == (2, 3, 12), "")
    # the core views are the layer's memory: a write shows in the next look-up
    layer.cores[1][0, 2] = 0.0
    cores2 = [c.copy() for c in cores]
    cores2[1][0, 2] = 0.0
    e3 = rel(layer.lookup(idx), rows_by_definition(cores2, [4, 3, 5], [2, 3, 2], pm, idx))
    report("core views write through to the library", e3 < 1e-5, f"{e3}")
    try:
        layer.lookup([55])
        report("lookup of id = rows raises IndexError", False, "no exception")
    except IndexError:
        report("lookup of id = rows raises IndexError", True)
    import pickle
    l2 = pickle.loads(pickle.dumps(layer))
    report("pickle round trip keeps rows", rel(l2.reconstruct(), layer.reconstruct()) == 0.0, "")


def test_engine(rng):
    row_shape, col_shape, ranks = [4, 3, 5], [2, 3, 2], [1, 3, 2, 1]
    layer, cores, pm = make_layer(rng)
    n = 25
    idx = rng.integers(0, 55, n)
    idx[[3, 9]] = 7  # padding entries
    rows = rows_by_definition(cores, row_shape, col_shape, pm, idx)
    w = rng.standard_normal(n).astype(np.float32)
    offsets = np.array([0, 4, 4, 11, 20])
    cases = [("sum", offsets, False, None, None), ("mean", offsets, False, None, None),
             ("sum", offsets, False, w, None), ("mean", offsets, False, None, 7), ("sum", offsets, False, w, 7),
             ("sum", np.append(offsets, n), True, None, None), ("mean", np.array([0, 0, 25]), True, None, 7)]
    eng = fpd.Engine(layer, threads=2, optimizer="sgd", lr=0.5)
    for mode, offs, ilo, ww, pad in cases:
        label = f"mode={mode} include_last_offset={ilo} weights={ww is not None} padding_idx={pad}"
        bags = bags_of(n, offs, ilo)
        want = pool(rows, idx, bags, mode, ww, pad)
        got = eng.forward(idx, offs, mode=mode, per_sample_weights=ww, padding_idx=pad, include_last_offset=ilo)
        e = rel(got, want)
        report(f"engine forward equals the definition: {label} ({e:.1e})", e < 1e-5, f"{e}")
        gout = rng.standard_normal(got.shape).astype(np.float32)
        eng.zero_grad()
        eng.backward(gout)
        bag, coef = entry_coefs(n, idx, bags, mode, ww, pad)
        ref = core_grads_by_definition(cores, row_shape, col_shape, pm, idx, bag, coef, gout)
        errs = [rel(eng.grad(m)[0], ref[m]) for m in range(3)]
        report(f"engine backward equals the product rule: {label} (max {max(errs):.1e})", max(errs) < 1e-4, str(errs))
    # mode none (nn.Embedding) with a 2-D batch and padding
    ids2 = idx[:12].reshape(3, 4)
    got = eng.forward(ids2, mode="none", padding_idx=7)
    want = rows[:12].copy()
    want[idx[:12] == 7] = 0.0
    report("engine forward mode none: [3, 4, D], padding rows zero", got.shape == (3, 4, 12) and
           rel(got.reshape(12, -1), want) < 1e-5, "")
    # fixed-size bags (2-D indices), sum
    got = eng.forward(idx[:24].reshape(6, 4), mode="sum")
    want = rows[:24].reshape(6, 4, -1).sum(1)
    report("engine forward 2-D indices = bags of 4", rel(got, want) < 1e-5, "")
    # touched slices and an SGD step: x -= lr * g on the layer's own cores
    eng.zero_grad()
    out = eng.forward(idx, offsets, mode="sum")
    gout = rng.standard_normal(out.shape).astype(np.float32)
    eng.backward(gout)
    grads = [eng.grad(m) for m in range(3)]
    g1, sl1 = grads[1]
    touched = sorted({t * 3 + (int(pm[i]) // 5) % 3 for i in idx for t in range(2)})
    report("grad lists the touched slices t * n_m + i_m", list(sl1) == touched, f"{list(sl1)} vs {touched}")
    before = [c.copy() for c in layer.cores]
    eng.step()
    e = max(rel(layer.cores[m], before[m] - 0.5 * grads[m][0]) for m in range(3))
    report(f"SGD step: cores -= lr * grad, in place ({e:.1e})", e < 1e-6, f"{e}")
    report("step clears the gradient", all(not eng.grad(m)[0].any() for m in range(3)), "")
    try:
        eng.forward(idx, np.array([0, 30]), mode="sum")
        report("offsets past the indices raise FPDError", False, "no exception")
    except fpd.FPDError as e:
        report("offsets past the indices: FPDError INVALID_ARG naming offsets[1]",
               e.status == fpd.Status.INVALID_ARG and "offsets[1]" in e.message, repr(e))
    # Adam closed form on a fresh engine: first step moves every touched entry by lr * sign(g)
    eng2 = fpd.Engine(layer, optimizer="adam", lr=0.01, eps=1e-12)
    eng2.forward(idx, offsets, mode="sum")
    eng2.backward(gout)
    g = [eng2.grad(m)[0] for m in range(3)]
    before = [c.copy() for c in layer.cores]
    eng2.step()
    e = max(rel(layer.cores[m] - before[m], -0.01 * np.sign(g[m])) for m in range(3))
    report(f"Adam first step: -lr * sign(g) ({e:.1e})", e < 1e-3, f"{e}")
    fe = fpd.embedding_bag(layer, idx, offsets, mode="mean")
    report("embedding_bag convenience equals the definition",
           rel(fe, pool(rows_by_definition([c.astype(np.float64) for c in layer.cores], row_shape, col_shape, pm, idx),
                        idx, bags_of(n, offsets, False), "mean")) < 1e-5, "")


def test_fit(rng):
    # a table that IS a tensor train: TT-SVD at its ranks recovers it
    row_shape, col_shape, ranks = [12, 10, 10], [4, 2, 2], [1, 3, 3, 1]
    cores = random_cores(rng, 1, row_shape, col_shape, ranks)
    W = rows_by_definition(cores, row_shape, col_shape, None, np.arange(1200)).astype(np.float32)
    layer, rep = fpd.fit(W, shape={"row_shape": row_shape, "col_shape": col_shape, "ranks": ranks, "terms": 1},
                         epochs=0)
    e = np.linalg.norm(layer.reconstruct() - W) / np.linalg.norm(W)
    report(f"fit of an exact rank-3 train recovers it (rel. error {e:.1e})", e < 1e-4, f"{e}")
    # a random table with the heuristic's shape: the reported error is numpy's
    W = rng.standard_normal((3000, 16)).astype(np.float32)
    layer, rep = fpd.fit(W, rank=4, terms=2)
    e = np.linalg.norm(layer.reconstruct().astype(np.float64) - W) / np.linalg.norm(W.astype(np.float64))
    s = layer.shape
    report(f"fit rank 4 terms 2: shape follows the request ({s['ranks']}, p={s['terms']})",
           s["terms"] == 2 and max(s["ranks"]) == 4 and s["rows"] == 3000, str(s))
    report(f"fit report's rel_error_final is numpy's error ({rep['rel_error_final']:.6f} vs {e:.6f})",
           abs(rep["rel_error_final"] - e) < 1e-5, f"{rep}")
    report("Layer.error agrees", abs(layer.error(W)["rel_error"] - e) < 1e-5, "")
    # float64 input is read as is; init's variance
    l3 = fpd.Layer.init(20000, 16, rank=8, kind="normal", scale=0.5, seed=3)
    v = float(l3.reconstruct().astype(np.float64).var())
    report(f"Layer.init normal(0, 0.5^2): realized variance {v:.4f} (exact by construction)", abs(v - 0.25) < 0.25 * 0.02,
           f"{v}")


def test_checkpoint(rng):
    layer, cores, pm = make_layer(rng)
    W = rng.standard_normal((55, 12)).astype(np.float32)
    path = os.path.join(WORK, "t.fpd.safetensors")
    extra = np.arange(6, dtype=np.int32).reshape(2, 3)
    layer.info = {"fit": "python-test", "seed": 9, "source_dtype": "F64", "rel_error": 0.123}
    fpd.save(path, {"T": layer}, tensors={"other": extra}, references={"T": W}, metadata={"note": "x"})
    header, meta, data = read_safetensors(path)
    info = json.loads(meta["fpd.table.T"])
    want_err = np.linalg.norm(layer.reconstruct().astype(np.float64) - W) / np.linalg.norm(W.astype(np.float64))
    report("save: metadata fpd.version 1, user keys kept", meta.get("fpd.version") == "1" and meta.get("note") == "x",
           str(meta))
    report("save: table JSON has the layer's shape and info",
           (info["rows"], info["dim"], info["row_shape"], info["col_shape"], info["ranks"], info["terms"],
            info["fit"], info["seed"], info["source_dtype"]) ==
           (55, 12, [4, 3, 5], [2, 3, 2], [1, 3, 2, 1], 2, "python-test", 9, "F64"), str(info))
    report(f"save: rel_error recomputed against the reference ({info['rel_error']:.6f} vs numpy {want_err:.6f})",
           abs(info["rel_error"] - want_err) < 1e-6, str(info))
    same = all(np.array_equal(st_tensor(header, data, f"T.fpd.core{m}"), layer.cores[m]) for m in range(3))
    report("save: cores written bit for bit (F32)", same, "")
    report("save: row_perm written (I32) and other tensors unchanged",
           header["T.fpd.row_perm"]["dtype"] == "I32" and np.array_equal(st_tensor(header, data, "T.fpd.row_perm"), pm)
           and np.array_equal(st_tensor(header, data, "other"), extra), "")
    with fpd.open(path) as ck:
        report("Checkpoint.tables / tensors", ck.tables == ["T"] and ck.tensors["other"] == ("I32", (2, 3)),
               str(ck.tensors))
        l2 = ck.load_layer("T")
        ti = ck.table_info("T")
        report("load_layer gives the same rows", rel(l2.reconstruct(), layer.reconstruct()) == 0.0, "")
        report("table_info reads the metadata", ti["fit"] == "python-test" and ti["core_dtype"] == "F32", str(ti))
        report("Checkpoint.tensor", np.array_equal(ck.tensor("other"), extra), "")
    # without a reference: rel_error is null, never the stale value carried in .info
    p2 = os.path.join(WORK, "t2.fpd.safetensors")
    fpd.save(p2, {"T": l2}, core_dtype="F16")
    header, meta, data = read_safetensors(p2)
    info = json.loads(meta["fpd.table.T"])
    report("save without a reference: rel_error null", info["rel_error"] is None, str(info))
    c0 = st_tensor(header, data, "T.fpd.core0")
    report("save core_dtype F16: cores rounded to float16", c0.dtype == np.float16 and
           np.array_equal(c0, layer.cores[0].astype(np.float16)) and info.get("core_dtype") == "F16", str(info))
    try:
        fpd.save(p2, {"T": l2})
        report("save onto an existing file raises", False, "no exception")
    except fpd.FPDError as e:
        report("save onto an existing file without overwrite: FPDError IO", e.status == fpd.Status.IO, repr(e))
    fpd.save(p2, {"T": l2}, overwrite=True)
    report("save with overwrite replaces it", read_safetensors(p2)[0]["T.fpd.core0"]["dtype"] == "F32", "")
    # a checkpoint written by the C tool (fpd-compress), read here: rows by the definition
    glove = os.path.join(ROOT, "samples", "glove-10k.safetensors")
    g = os.path.join(WORK, "g.fpd.safetensors")
    r = subprocess.run([os.path.join(BUILD, "fpd-compress"), glove, "-o", g, "--rank", "6", "--epochs", "0", "-q"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        report("fpd-compress the sample", False, r.stderr[-300:])
        return
    header, meta, data = read_safetensors(g)
    name = "word_embeddings.weight"
    info = json.loads(meta["fpd.table." + name])
    cs = [st_tensor(header, data, f"{name}.fpd.core{m}") for m in range(len(info["row_shape"]))]
    with fpd.open(g) as ck:
        gl = ck.load_layer(name)
    idx = np.array([0, 1, 9999, 4321])
    e = rel(gl.lookup(idx), rows_by_definition(cs, info["row_shape"], info["col_shape"], None, idx))
    report(f"a checkpoint of fpd-compress: load_layer + lookup equal the definition ({e:.1e})", e < 1e-5, f"{e}")


def dequantize_fused(q, kind, dim):
    """FBGEMM's fused row-wise rows [N, bytes] dequantized here from the layout
    (int8: dim codes, F32 scale, F32 bias; int4: two codes a byte, the even column in
    the low nibble, F16 scale, F16 bias): x = code * scale + bias."""
    q = np.asarray(q, np.uint8)
    if kind == "int8":
        codes = q[:, :dim].astype(np.float64)
        sb = q[:, dim:dim + 8].copy().view("<f4").astype(np.float64)
    else:
        nb = (dim + 1) // 2
        lo, hi = q[:, :nb] & 15, q[:, :nb] >> 4
        codes = np.stack([lo, hi], axis=2).reshape(q.shape[0], 2 * nb)[:, :dim].astype(np.float64)
        sb = q[:, nb:nb + 4].copy().view("<f2").astype(np.float64)
    return codes * sb[:, :1] + sb[:, 1:2]


def test_rowwise():
    """Row-wise tables written by fpd-compress --encoding int8|int4, read by the
    package, against the fused bytes dequantized here."""
    glove = os.path.join(ROOT, "samples", "glove-10k.safetensors")
    name = "word_embeddings.weight"
    for kind in ("int8", "int4"):
        path = os.path.join(WORK, f"g.{kind}.safetensors")
        r = subprocess.run([os.path.join(BUILD, "fpd-compress"), glove, "-o", path, "--encoding", kind, "--queries",
                            "0", "-q"], capture_output=True, text=True)
        if r.returncode != 0:
            report(f"fpd-compress --encoding {kind}", False, r.stderr[-300:])
            continue
        header, meta, data = read_safetensors(path)
        want = dequantize_fused(st_tensor(header, data, name + ".rowwise.fused"), kind, 100)
        with fpd.open(path) as ck:
            report(f"{kind}: Checkpoint.rowwise_tables lists the table, tables (FPD) does not",
                   ck.rowwise_tables == [name] and ck.tables == [], str(ck.rowwise_tables))
            q = ck.load_rowwise(name)
            report(f"{kind}: load_rowwise kind and shape", (q.kind, q.rows, q.dim) == (kind, 10000, 100), repr(q))
            e = rel(q.reconstruct(), want)
            report(f"{kind}: reconstruct equals the bytes dequantized here ({e:.1e})", e < 1e-6, f"{e}")
            idx = np.array([[3, 9999], [3, 0]])
            e = rel(q.lookup(idx), want[idx])
            report(f"{kind}: lookup of a 2-D index array ({e:.1e})", e < 1e-6 and q.lookup(idx).shape == (2, 2, 100),
                   f"{e}")
            e = rel(ck.dense(name), want)
            report(f"{kind}: Checkpoint.dense dequantizes ({e:.1e})", e < 1e-6, f"{e}")
            try:
                q.lookup([10000])
                report(f"{kind}: an index out of range raises", False, "no exception")
            except fpd.FPDError as ex:
                report(f"{kind}: an index out of range raises FPDError INVALID_ARG",
                       ex.status == fpd.Status.INVALID_ARG, repr(ex))


def test_heuristic():
    s = fpd.suggest(10**7, 128)
    top = [(c["r"], c["p"]) for c in s["candidates"][:4]]
    report(f"suggest N=1e7 D=128: ranking starts (32,1), (16,2), (8,4), (24,1) as documented ({top})",
           top == [(32, 1), (16, 2), (8, 4), (24, 1)] and s["selected"] == 0 and s["target_rank"] == 32, str(top))
    c0 = s["candidates"][0]
    params = sum(c0["p"] * c0["row_shape"][m] * c0["ranks"][m] * c0["col_shape"][m] * c0["ranks"][m + 1]
                 for m in range(c0["k"]))
    report("suggest: params and bytes of the top candidate by the formula",
           c0["params"] == params and c0["bytes"] == 4 * params and
           abs(c0["ratio"] - 10**7 * 128 * 4 / (4 * params)) < 1e-6 * c0["ratio"], str(c0))
    b = 1 << 20
    s = fpd.suggest(10**6, 64, budget=b)
    sel = s["candidates"][s["selected"]]
    fits = [c["bytes"] for c in s["candidates"] if c["bytes"] <= b]
    report("suggest budget 1 MiB: the largest candidate within it", sel["bytes"] == max(fits), f"{sel['bytes']} {fits}")
    p = fpd.plan(500, 64)
    report("plan of 500 rows: stays dense with a reason", not p["compress"] and "500" in p["reason"], p["reason"])
    W = np.random.default_rng(1).standard_normal((4000, 16)).astype(np.float32)
    s = fpd.suggest(4000, 16, table=W)
    report("suggest with the table: predicted errors in (0, 1.05]",
           s["errors_known"] and all(0 < c["predicted_error"] <= 1.05 for c in s["candidates"]), s["estimate"])


def test_compress(rng):
    """fpd.compress (fpd_compress_checkpoint) against the file it writes, parsed here."""
    W = rng.uniform(-1, 1, (1200, 16)).astype(np.float32)
    ids = np.arange(7, dtype=np.int32)
    src = os.path.join(WORK, "c-in.safetensors")
    fpd.save(src, tensors={"emb": W, "ids": ids})
    out = os.path.join(WORK, "c-fpd.safetensors")
    stages = []
    rep = fpd.compress(src, out, encoding="fpd", rank=4, min_ratio=0, epochs=1, als_sweeps=0, queries=0,
                       progress=lambda st, d, t: stages.append(st))
    header, meta, data = read_safetensors(out)
    t = next(x for x in rep["tables"] if x["name"] == "emb")
    fpd_bytes = sum(e - b for n, h in header.items() for b, e in [h["data_offsets"]] if n.startswith("emb.fpd."))
    report("compress: schema fpd-compress/2, emb stored as FPD", rep["schema"] == "fpd-compress/2" and
           t["encoding"] == "fpd" and t["compressed"] and "emb" not in header, str(t)[:300])
    report(f"compress: the report's bytes_after ({t['bytes_after']}) = the file's emb.fpd.* bytes ({fpd_bytes}); "
           "bytes_before = 1200 x 16 x 4", t["bytes_after"] == fpd_bytes and t["bytes_before"] == 1200 * 16 * 4, "")
    total = sum(h["data_offsets"][1] - h["data_offsets"][0] for h in header.values())
    report("compress: totals.bytes_after = every tensor's bytes in the file", rep["totals"]["bytes_after"] == total,
           f"{rep['totals']} vs {total}")
    report("compress: the other tensor copied byte for byte", np.array_equal(st_tensor(header, data, "ids"), ids), "")
    tm = json.loads(meta["fpd.table.emb"])
    cores = [st_tensor(header, data, f"emb.fpd.core{m}") for m in range(len(tm["row_shape"]))]
    Wh = rows_by_definition(cores, tm["row_shape"], tm["col_shape"], None, np.arange(1200))
    e = np.linalg.norm(Wh - W) / np.linalg.norm(W.astype(np.float64))
    report(f"compress: rel_error {t['rel_error']:.6f} = the stored cores' error by the definition ({e:.6f})",
           abs(t["rel_error"] - e) < 1e-5 * e, "")
    report("compress: a target missed (rank 4 on a random table): a warning in the report",
           any("above the error target" in w and "--max-error" in w for w in rep["warnings"]), str(rep["warnings"]))
    report("compress: progress stages 'table 1/1 emb: STAGE'",
           bool(stages) and all(st.startswith("table 1/1 emb: ") for st in stages), str(stages[:3]))
    # int8: FBGEMM's rows, dequantized here
    out8 = os.path.join(WORK, "c-int8.safetensors")
    rep8 = fpd.compress(src, out8, encoding="int8", queries=0)
    h8, _, d8 = read_safetensors(out8)
    t8 = rep8["tables"][0]
    q = st_tensor(h8, d8, "emb.rowwise.fused")
    e8 = np.linalg.norm(dequantize_fused(q, "int8", 16) - W) / np.linalg.norm(W.astype(np.float64))
    report(f"compress int8: bytes_after = 1200 x (16 + 8) and rel_error {t8['rel_error']:.6f} = the dequantized "
           f"rows' ({e8:.6f})", t8["bytes_after"] == 1200 * 24 == q.nbytes and abs(t8["rel_error"] - e8) < 1e-4 * e8,
           str(t8)[:300])
    # errors: CONFIG for options that do not fit, IO for an existing output, CANCELLED from progress
    for what, kw, want in [("a missing table", {"tables": ["nope"]}, fpd.Status.CONFIG),
                           ("an existing output", {}, fpd.Status.IO),
                           ("progress returning False", {"progress": lambda *a: False, "overwrite": True,
                                                         "encoding": "fpd", "rank": 4}, fpd.Status.CANCELLED)]:
        try:
            fpd.compress(src, out, **kw)
            report(f"compress with {what} raises FPDError", False, "no exception")
        except fpd.FPDError as ex:
            report(f"compress with {what}: FPDError {want.name}", ex.status == want, repr(ex))
    report("compress cancelled: the existing output is left as it was",
           read_safetensors(out)[0].keys() == header.keys(), "")


def test_ncf_eval():
    """fpd.ncf_eval (fpd_ncf_eval_file) on a hand-computed case and the NCF GMF-8 checkpoint."""
    # dim 2, w = (1, 1), b = 0: logits are dot products. User 0 (1, 0) holds out item 1
    # (logit 2); 8 of its 10 negatives (item 0, logit 3) score higher: rank 8, a hit
    # with gain 1/log2(10). User 1 (0, 1) holds out item 2 (logit 0); all 10 negatives
    # (items 3, 4: logit 5) score higher: a miss.
    ck = os.path.join(WORK, "gmf.safetensors")
    fpd.save(ck, tensors={"user_embedding.weight": np.array([[1, 0], [0, 1]], np.float32),
                          "item_embedding.weight": np.array([[3, 0], [2, 0], [1, 0], [0, 5], [2, 5]], np.float32),
                          "prediction.weight": np.array([[1, 1]], np.float32),
                          "prediction.bias": np.array([0], np.float32)})
    r, n = os.path.join(WORK, "t.rating"), os.path.join(WORK, "t.negative")
    with open(r, "w") as f:
        f.write("0\t1\t5\t0\n1\t2\t5\t0\n")
    with open(n, "w") as f:
        f.write("(0,1)\t" + "\t".join(["0"] * 8 + ["2", "2"]) + "\n(1,2)\t" + "\t".join(["3", "4"] * 5) + "\n")
    m = fpd.ncf_eval(ck, r, n)
    report(f"ncf_eval: hand-computed HR@10 0.5, NDCG@10 0.5/log2(10) ({m})",
           m["users"] == 2 and m["hr10"] == 0.5 and abs(m["ndcg10"] - 0.5 / math.log2(10)) < 1e-12, str(m))
    try:
        fpd.ncf_eval(ck, r, os.path.join(WORK, "none.negative"))
        report("ncf_eval with a missing file raises FPDError", False, "no exception")
    except fpd.FPDError as ex:
        report("ncf_eval with a missing file: FPDError IO naming it", ex.status == fpd.Status.IO and
               "none.negative" in ex.message, repr(ex))
    gmf = os.path.join(DATA, "ncf", "ncf_gmf8_ml1m.safetensors")
    rating, negative = os.path.join(DATA, "ncf", "ml-1m.test.rating"), os.path.join(DATA, "ncf", "ml-1m.test.negative")
    if not all(os.path.exists(p) for p in (gmf, rating, negative)):
        skip("ncf_eval on the NCF GMF-8 checkpoint: HR@10 0.6368 NOT TESTED", f"shared data not found under {DATA}/ncf")
        return
    m = fpd.ncf_eval(gmf, rating, negative)
    # shared/data/README.md: HR@10 0.6368, NDCG@10 0.3691 (an independent NumPy evaluation)
    report(f"ncf_eval on the NCF GMF-8 checkpoint: HR@10 {m['hr10']:.4f}, NDCG@10 {m['ndcg10']:.4f} "
           "(0.6368, 0.3691 per shared/data/README.md)",
           m["users"] == 6040 and abs(m["hr10"] - 0.6368) < 5e-4 and abs(m["ndcg10"] - 0.3691) < 5e-4, str(m))


def main():
    rng = np.random.default_rng(12)
    for t in (test_layouts, test_loader, test_errors, lambda: test_layer(rng), lambda: test_engine(rng),
              lambda: test_fit(rng), lambda: test_checkpoint(rng), test_rowwise, test_heuristic,
              lambda: test_compress(rng), test_ncf_eval):
        try:
            t()
        except Exception as e:  # a crash of one group is a failure, the others still run
            import traceback
            report(f"{getattr(t, '__name__', 'test')} ran", False, traceback.format_exc()[-800:])
    shutil.rmtree(WORK, ignore_errors=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
