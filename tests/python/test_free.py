"""Free coordinates per row (format extension free/1; row i = FPD(i) + E[i] P) in the
fpd package and fpd.torch, against references computed here from the definition
(tests/python/reference.py's rows plus E P, autograd of a double reconstruction). E
stored symmetric (free-sym/1, free_dtype "int8-sym"/"int4-sym") by fpd.save,
fpd.compress and fpd-compress, against a NumPy quantizer and encoder written here from
the layout (lib/fpd.h, enum fpd_free_kind), and read back by libfpd and by the
independent NumPy reader samples/pytorch/fpd_embedding.py.

Usage: python3 tests/python/test_free.py BUILD_DIR ROOT   (torch is optional: its
checks are skipped loudly without it)."""
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile

import numpy as np

BUILD, ROOT = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
sys.path.insert(0, os.path.join(ROOT, "tools", "python"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "samples", "pytorch"))
os.environ.setdefault("FPD_LIBRARY", os.path.join(BUILD, "libfpd.so"))

import fpd  # noqa: E402
import fpd_embedding as fe  # noqa: E402
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


# -- free-sym/1: E as symmetric codes q and an F16 scale a row, E[i, j] = q * scale_i

SYM_QMAX = {"int8-sym": 127, "int4-sym": 7}
ACCEPTED = "int8, int4, int8-sym or int4-sym"


def f16_ceil(x):
    """The smallest float16 at or above each x >= 0 (float64): NumPy rounds to nearest,
    so a value that came out below x moves to the next float16 up."""
    h = np.asarray(x, np.float64).astype(np.float16)
    below = h.astype(np.float64) < x
    h[below] = np.nextafter(h[below], np.float16(np.inf))
    return h


def sym_reference(E, kind):
    """(decoded E float32, the stored rows uint8 [N, B]) by the layout: scale = max|row| /
    qmax rounded up to F16 (0 for a zero row), code = round-half-even(x / scale)
    clamped; int8-sym bytes q + 128, int4-sym nibbles q + 8 (even column low, an odd c
    padded with 8); then the scale as F16 little-endian."""
    qmax = SYM_QMAX[kind]
    E = np.asarray(E, np.float64)
    scale = f16_ceil(np.abs(E).max(axis=1) / qmax)
    s = scale.astype(np.float64)[:, None]
    q = np.clip(np.rint(np.divide(E, s, out=np.zeros_like(E), where=s > 0)), -qmax, qmax).astype(np.int64)
    if kind == "int8-sym":
        codes = (q + 128).astype(np.uint8)
    else:
        nib = np.full((E.shape[0], E.shape[1] + E.shape[1] % 2), 8, np.int64)
        nib[:, :E.shape[1]] = q + 8
        codes = (nib[:, 0::2] | (nib[:, 1::2] << 4)).astype(np.uint8)
    rows = np.concatenate([codes, scale.astype("<f2").view(np.uint8).reshape(-1, 2)], axis=1)
    return (q * s).astype(np.float32), rows


def rewrite_metadata(src, dst, edit):
    """Copy a safetensors file with its __metadata__ changed by edit(meta)."""
    d = open(src, "rb").read()
    n = struct.unpack("<Q", d[:8])[0]
    h = json.loads(d[8:8 + n])
    edit(h["__metadata__"])
    b = json.dumps(h).encode()
    b += b" " * (-len(b) % 8)
    open(dst, "wb").write(struct.pack("<Q", len(b)) + b + d[8 + n:])


def refused(fn, exc, *words):
    """"" when fn() raises exc with every word in its message, else what happened (a
    report's why)."""
    try:
        fn()
    except exc as e:
        return "" if all(w in str(e) for w in words) else f"message {str(e)!r} lacks one of {words}"
    return f"no {exc.__name__} raised"


def report_refused(name, fn, exc, *words):
    why = refused(fn, exc, *words)
    report(name, not why, why)


def load_bad(path, table, free_stored=False):
    with fpd.Checkpoint(path) as ck:
        ck.load_layer(table, free_stored=free_stored)


def check_sym_file(label, path, table, kind, want_e, want_rows, W=None):
    """A file with E stored as `kind`: its bytes are the reference rows, libfpd and the
    NumPy reader load E = the reference's decoded E and the same rows."""
    hdr, meta, data = read_safetensors(path)
    t = hdr[f"{table}.fpd.free"]
    info = json.loads(meta[f"fpd.table.{table}"])
    report(f"{label}: fpd.extensions free/1,free-sym/1, free_dtype {kind}, E U8 {list(want_rows.shape)}",
           meta.get("fpd.extensions") == "free/1,free-sym/1" and info.get("free_dtype") == kind and
           t["dtype"] == "U8" and t["shape"] == list(want_rows.shape), f"{meta.get('fpd.extensions')} {info} {t}")
    got = st_tensor(hdr, data, f"{table}.fpd.free")
    report(f"{label}: E's bytes = the NumPy encoder's ({np.count_nonzero(got != want_rows)} differ)",
           np.array_equal(got, want_rows))
    with fpd.Checkpoint(path) as ck:
        ti = ck.table_info(table)
        layer = ck.load_layer(table)
    report(f"{label}: table_info free_dtype {kind!r}", ti["free_dtype"] == kind, str(ti["free_dtype"]))
    d = np.abs(layer.free_e - want_e).max()
    report(f"{label}: libfpd loads E = the NumPy quantizer's E exactly (max diff {d:.1e})",
           np.array_equal(layer.free_e, want_e))
    ft = fe.load_fpd_table(path, table)
    report(f"{label}: the NumPy reader decodes E = the NumPy quantizer's E exactly",
           ft.meta.get("free_dtype") == kind and np.array_equal(ft.free_e, want_e))
    ids = np.arange(layer.rows)
    lib_rows = layer.lookup(ids)
    e = rel(fe.reconstruct_rows(ft, ids), lib_rows)
    report(f"{label}: the NumPy reader's rows = libfpd's look-up on all {layer.rows} rows ({e:.1e})", e < 1e-5)
    if W is not None:
        e = rel(lib_rows, W)
        report(f"{label}: libfpd's rows = FPD rows + E P of the reference E ({e:.1e})", e < 1e-5)
    try:
        import torch
    except ImportError:
        skip(f"{label}: the NumPy reader's torch module", "no torch for this interpreter")
        return layer
    bag = fe.FPDEmbeddingBag.from_file(path, table, mode="sum")
    e = rel(bag.lookup(torch.as_tensor(ids)).detach().double().numpy(), lib_rows)
    report(f"{label}: the NumPy reader's FPDEmbeddingBag rows = libfpd's look-up ({e:.1e})", e < 1e-5)
    return layer


def test_sym(rng):
    L = fpd._lib.load()
    names = [L.fpd_free_kind_name(v).decode() for v in fpd._lib.FREE_KINDS.values()]
    report("FREE_KINDS are enum fpd_free_kind (fpd_free_kind_name)", names == list(fpd._lib.FREE_KINDS), str(names))
    layer, cores, perm, E, Pm, _ = make(rng)
    E[5] = 0  # a zero row: scale 0, codes 0
    E[6] = [0.875, 0.3125, -0.0625]  # int4-sym: scale 0.875 / 7 = 0.125 exactly; codes 2.5 -> 2, -0.5 -> 0
    E[7] = [1e-4, -3e-6, 2e-5]  # int4-sym: a subnormal F16 scale
    layer.set_free_coords(C, E, Pm)
    base = rows_by_definition(cores, ROW, COL, perm, np.arange(N))
    for kind in ("int4-sym", "int8-sym"):
        want_e, want_rows = sym_reference(E, kind)
        if kind == "int4-sym":
            report("int4-sym reference: half-even ties and the zero row",
                   np.array_equal(want_e[6], np.float32([0.875, 0.25, 0])) and not want_e[5].any(), str(want_e[6]))
        path = os.path.join(WORK, f"save-{kind}.safetensors")
        fpd.save(path, {"emb": layer}, free_dtype=kind)
        lq = check_sym_file(f"fpd.save(free_dtype={kind!r})", path, "emb", kind, want_e, want_rows,
                            base + want_e.astype(np.float64) @ Pm)
        q = pickle.loads(pickle.dumps(layer))
        q.quantize_free(kind)
        report(f"Layer.quantize_free({kind!r}) = the NumPy quantizer's E", np.array_equal(q.free_e, want_e))
        q.quantize_free(kind)
        report(f"Layer.quantize_free({kind!r}) again moves nothing", np.array_equal(q.free_e, want_e))
        p2 = os.path.join(WORK, f"resave-{kind}.safetensors")
        fpd.save(p2, {"emb": lq}, free_dtype=kind)
        h2, _, d2 = read_safetensors(p2)
        report(f"{kind}: the loaded layer saved again gives the same bytes",
               np.array_equal(st_tensor(h2, d2, "emb.fpd.free"), want_rows))
        # free-sym/1 undeclared (free-rowwise/1 instead): both readers refuse, naming it
        bad = os.path.join(WORK, f"undeclared-{kind}.safetensors")
        rewrite_metadata(path, bad, lambda m: m.update({"fpd.extensions": "free/1,free-rowwise/1"}))
        report_refused(f"{kind} without free-sym/1 declared: libfpd refuses, naming free-sym/1",
                       lambda: load_bad(bad, "emb"), fpd.FPDError, "free-sym/1")
        report_refused(f"{kind} without free-sym/1 declared: the NumPy reader refuses, naming free-sym/1",
                       lambda: fe.load_fpd_table(bad, "emb"), ValueError, "free-sym/1")
    # the row-wise kinds keep their extension
    path = os.path.join(WORK, "int8-rowwise.safetensors")
    fpd.save(path, {"emb": layer}, free_dtype="int8")
    ext = read_safetensors(path)[1].get("fpd.extensions")
    report("fpd.save(free_dtype='int8') still declares free-rowwise/1 (not free-sym/1)",
           ext == "free/1,free-rowwise/1", str(ext))
    # bad values
    p3 = os.path.join(WORK, "bad.safetensors")
    report_refused("fpd.save(free_dtype='int4-col') is refused, naming the accepted values",
                   lambda: fpd.save(p3, {"emb": layer}, free_dtype="int4-col"), ValueError, ACCEPTED, "int4-col")
    report_refused("Layer.quantize_free('int4-col') is refused, naming the accepted values",
                   lambda: layer.quantize_free("int4-col"), ValueError, ACCEPTED, "int4-col")
    report_refused("fpd.compress(free_dtype='int4-col') is refused, naming the accepted values",
                   lambda: fpd.compress(os.path.join(ROOT, "samples", "glove-10k.safetensors"), p3, rank=4,
                                        free_coords=2, free_dtype="int4-col"), ValueError, ACCEPTED, "int4-col")
    report("nothing written by the refusals", not os.path.exists(p3))
    src = os.path.join(WORK, "save-int4-sym.safetensors")
    bad = os.path.join(WORK, "int4-col.safetensors")

    def edit(m):
        t = json.loads(m["fpd.table.emb"])
        t["free_dtype"] = "int4-col"
        m["fpd.table.emb"] = json.dumps(t)
    rewrite_metadata(src, bad, edit)
    report_refused("a file with free_dtype 'int4-col': libfpd refuses, naming the accepted values",
                   lambda: load_bad(bad, "emb"), fpd.FPDError, "int4-col", '"int8-sym"', '"int4-sym"')
    report_refused("a file with free_dtype 'int4-col': the NumPy reader refuses, naming the accepted values",
                   lambda: fe.load_fpd_table(bad, "emb"), ValueError, "int4-col", "int8-sym", "int4-sym")
    # free_dtype dropped while E stays U8: both readers refuse (the NumPy reader read the
    # bytes as values before); a negative scale: both refuse, naming the row
    def drop(m):
        t = json.loads(m["fpd.table.emb"])
        del t["free_dtype"]
        m["fpd.table.emb"] = json.dumps(t)
    rewrite_metadata(src, bad, drop)
    report_refused("free_dtype dropped, E still U8: libfpd refuses", lambda: load_bad(bad, "emb"), fpd.FPDError,
                   "emb.fpd.free", "U8")
    report_refused("free_dtype dropped, E still U8: the NumPy reader refuses, naming the file and the tensor",
                   lambda: fe.load_fpd_table(bad, "emb"), ValueError, bad, "emb.fpd.free", "no free_dtype")
    d = bytearray(open(src, "rb").read())
    hdr, _, _ = read_safetensors(src)
    n = struct.unpack("<Q", bytes(d[:8]))[0]
    a0 = hdr["emb.fpd.free"]["data_offsets"][0]
    rb = hdr["emb.fpd.free"]["shape"][1]
    d[8 + n + a0 + 2 * rb + rb - 1] |= 0x80  # row 2's F16 scale: sign bit set
    open(bad, "wb").write(bytes(d))
    report_refused("a negative scale: libfpd refuses, naming the row", lambda: load_bad(bad, "emb"), fpd.FPDError,
                   "row 2", "negative")
    report_refused("a negative scale, E loaded as stored rows: libfpd refuses, naming the file, tensor and row",
                   lambda: load_bad(bad, "emb", free_stored=True), fpd.FPDError, bad, "emb.fpd.free", "row 2",
                   "negative")
    report_refused("a negative scale: the NumPy reader refuses, naming the file and the row",
                   lambda: fe.load_fpd_table(bad, "emb"), ValueError, bad, "row 2", "negative")


def test_sym_cli(rng):
    """fpd-compress --free-dtype int4-sym|int8-sym on the GloVe sample: E = the NumPy
    quantizer applied to the F32 E of the same fit (fpd-compress without --free-dtype);
    fpd.compress(free_dtype=) writes the same bytes."""
    exe, glove, T = os.path.join(BUILD, "fpd-compress"), os.path.join(ROOT, "samples", "glove-10k.safetensors"), \
        "word_embeddings.weight"
    if not (os.path.exists(exe) and os.path.exists(glove)):
        skip("fpd-compress --free-dtype int4-sym", f"no {exe} or {glove}")
        return
    args = ["--rank", "8", "--epochs", "0", "--als", "0", "--free-coords", "8", "--queries", "0", "-q"]
    f32 = os.path.join(WORK, "cli-f32.safetensors")
    r = subprocess.run([exe, glove, "-o", f32] + args, capture_output=True, text=True)
    report("fpd-compress --free-coords 8 (F32 E): exit 0", r.returncode == 0, r.stderr[-500:])
    with fpd.Checkpoint(f32) as ck:
        E = ck.load_layer(T).free_e.copy()
    for kind in ("int4-sym", "int8-sym"):
        out = os.path.join(WORK, f"cli-{kind}.safetensors")
        r = subprocess.run([exe, glove, "-o", out, "--free-dtype", kind] + args, capture_output=True, text=True)
        report(f"fpd-compress --free-dtype {kind}: exit 0", r.returncode == 0, r.stderr[-500:])
        if r.returncode:
            continue
        want_e, want_rows = sym_reference(E, kind)
        check_sym_file(f"fpd-compress --free-dtype {kind}", out, T, kind, want_e, want_rows)
        py = os.path.join(WORK, f"py-{kind}.safetensors")
        rep = fpd.compress(glove, py, rank=8, epochs=0, als_sweeps=0, free_coords=8, free_dtype=kind, queries=0)
        t = rep["tables"][0]
        h1, _, d1 = read_safetensors(out)
        h2, _, d2 = read_safetensors(py)
        report(f"fpd.compress(free_dtype={kind!r}): the report says {kind}, E's bytes = fpd-compress's",
               t["free_dtype"] == kind and np.array_equal(st_tensor(h1, d1, f"{T}.fpd.free"),
                                                           st_tensor(h2, d2, f"{T}.fpd.free")), str(t["free_dtype"]))
        nb = {"int4-sym": 8 // 2 + 2, "int8-sym": 8 + 2}[kind]
        report(f"fpd.compress(free_dtype={kind!r}): free_bytes = E as {nb}-byte rows + F32 P",
               t["free_bytes"] == 10000 * nb + 8 * 100 * 4, str(t["free_bytes"]))


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


def test_qat(rng):
    """fpd.Engine(free_qat=kind) and FPDEmbeddingBag.set_free_qat: the forward uses E
    rounded by the NumPy quantizer above, dE passes straight through (g P^T), dP takes
    the rounded rows; bad kinds refused."""
    layer, cores, perm, E, Pm, W = make(rng)
    base = rows_by_definition(cores, ROW, COL, perm, np.arange(N))
    ids = np.array([0, 54, 17, 17, 3, 40])
    g = rng.standard_normal((ids.size, 12)).astype(np.float32)
    for kind in ("int4-sym", "int8-sym"):
        want_e, _ = sym_reference(E, kind)
        Wq = base + want_e.astype(np.float64) @ Pm
        eng = fpd.Engine(layer, free_qat=kind, optimizer="sgd", lr=0.1)
        out = eng.forward(ids, mode="none")
        e1, e2 = rel(out, Wq[ids]), rel(out, W[ids])
        report(f"Engine(free_qat={kind!r}).forward = rows with E rounded by the NumPy quantizer ({e1:.1e}; "
               f"F32 E's rows {e2:.1e} away)", e1 < 1e-5 and e2 > 1e-4)
        eng.backward(g)
        dE = np.zeros((N, C))
        np.add.at(dE, ids, g.astype(np.float64) @ Pm.T.astype(np.float64))
        dP = want_e[ids].astype(np.float64).T @ g
        k = layer.k
        e3, e4 = rel(eng.grad(k)[0], dE), rel(eng.grad(k + 1)[0], dP)
        report(f"{kind}: dE = g P^T (straight through, {e3:.1e}), dP = E_rounded^T g ({e4:.1e})",
               e3 < 1e-5 and e4 < 1e-5)
    report_refused("Engine(free_qat='int4-col') is refused, naming the accepted values",
                   lambda: fpd.Engine(layer, free_qat="int4-col"), ValueError, ACCEPTED, "int4-col")
    try:
        import fpd.torch as ft
        import torch
    except ImportError:
        skip("FPDEmbeddingBag.set_free_qat", "no torch for this interpreter")
        return
    want_e, _ = sym_reference(E, "int4-sym")
    Wq = base + want_e.astype(np.float64) @ Pm
    bag = ft.FPDEmbeddingBag(N, 12, mode="sum", layer=pickle.loads(pickle.dumps(layer)))
    bag.set_free_qat("int4-sym")
    t_ids = torch.from_numpy(ids)
    offs = torch.arange(ids.size)
    e1 = rel(bag(t_ids, offs).detach().numpy(), Wq[ids])
    back = pickle.loads(pickle.dumps(bag))
    e2 = rel(back(t_ids, offs).detach().numpy(), Wq[ids])
    report(f"FPDEmbeddingBag.set_free_qat('int4-sym'): rows with rounded E ({e1:.1e}), kept by pickling ({e2:.1e})",
           e1 < 1e-5 and e2 < 1e-5 and back.free_qat == "int4-sym")
    # save without free_dtype: E stored in the kind it trains in, the rows training saw
    sp = os.path.join(WORK, "qat-save.safetensors")
    bag.save(sp, name="emb")
    h, _, _ = read_safetensors(sp)
    with fpd.open(sp) as ck:
        lq, info = ck.load_layer("emb"), ck.table_info("emb")
    e4 = rel(lq.lookup(ids), Wq[ids])
    report(f"save() after set_free_qat('int4-sym') stores E as int4-sym, the rows training saw ({e4:.1e})",
           info["free_dtype"] == "int4-sym" and h["emb.fpd.free"]["dtype"] == "U8" and e4 < 1e-5, str(info))
    other = pickle.loads(pickle.dumps(bag))
    other.set_free_qat("int8-sym")
    report_refused("fpd.torch.save of modules training E in two kinds, without free_dtype, is refused",
                   lambda: ft.save(os.path.join(WORK, "qat-two.safetensors"), {"a": bag, "b": other}), ValueError,
                   "int4-sym", "int8-sym", "free_dtype")
    bag.set_free_qat(None)
    e3 = rel(bag(t_ids, offs).detach().numpy(), W[ids])
    report(f"set_free_qat(None): F32 E again ({e3:.1e})", e3 < 1e-5)
    plain = ft.FPDEmbeddingBag(N, 12, mode="sum", layer=fpd.Layer.from_cores(cores, N, perm))
    report_refused("set_free_qat on a layer without free coordinates is refused",
                   lambda: plain.set_free_qat("int4-sym"), ValueError, "free coordinates")


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


def test_stored(rng):
    """E held as stored rows (Layer.store_free, Checkpoint.load_layer(free_stored=True)):
    look-ups = the rows by the definition with the NumPy quantizer's E, bit for bit the
    quantize_free layer's; free_e and training refused with a clear message; saving it
    writes the reference's bytes; expand_free gives the quantizer's E."""
    layer, cores, perm, E, Pm, _ = make(rng)
    base = rows_by_definition(cores, ROW, COL, perm, np.arange(N))
    for kind, rb in (("int4-sym", (C + 1) // 2 + 2), ("int8-sym", C + 2)):
        want_e, want_rows = sym_reference(E, kind)
        s = pickle.loads(pickle.dumps(layer))
        q = pickle.loads(pickle.dumps(layer))
        q.quantize_free(kind)
        report(f"{kind}: free_memory_bytes in F32 = 4 c (rows + dim)", s.free_memory_bytes == 4 * C * (N + 12),
               str(s.free_memory_bytes))
        s.store_free(kind)
        report(f"{kind}: store_free holds E as {kind} rows: N row bytes + P",
               s.free_stored == kind and s.free_memory_bytes == N * rb + 4 * C * 12,
               f"{s.free_stored} {s.free_memory_bytes}")
        ids = np.arange(N)
        got = s.lookup(ids)
        e = rel(got, base + want_e.astype(np.float64) @ Pm)
        report(f"{kind}: stored-E look-ups = the definition with the NumPy quantizer's E ({e:.1e})", e < 1e-5)
        report(f"{kind}: stored-E look-ups are the quantize_free layer's bit for bit",
               np.array_equal(got, q.lookup(ids)))
        eng = fpd.Engine(s)
        out = eng.forward(np.array([3, 7, 7, 50]), np.array([0, 1]))
        report(f"{kind}: an Engine forward over stored E is the float32 layer's",
               np.array_equal(out, fpd.Engine(q).forward(np.array([3, 7, 7, 50]), np.array([0, 1]))))
        report_refused(f"{kind}: Engine backward over stored E is refused, saying how to train",
                       lambda: eng.backward(np.ones_like(out)), fpd.FPDError, "stored", "fpd_layer_expand_free")
        report_refused(f"{kind}: free_e of stored E is refused, naming expand_free", lambda: s.free_e, ValueError,
                       kind, "expand_free")
        path = os.path.join(WORK, f"stored-{kind}.safetensors")
        fpd.save(path, {"emb": s}, free_dtype=kind)
        h, _, d = read_safetensors(path)
        report(f"{kind}: fpd.save of the stored layer writes the reference's rows",
               np.array_equal(st_tensor(h, d, "emb.fpd.free"), want_rows))
        with fpd.Checkpoint(path) as ck:
            ls = ck.load_layer("emb", free_stored=True)
            lf = ck.load_layer("emb")
        report(f"{kind}: load_layer(free_stored=True) keeps the rows; plain load_layer gives float32",
               ls.free_stored == kind and lf.free_stored is None and np.array_equal(ls.lookup(ids), lf.lookup(ids)))
        report("repr names the stored kind", f"free_stored='{kind}'" in repr(s), repr(s))
        try:
            import fpd.torch as ft
        except ImportError:
            ft = None
        if ft is not None:
            report_refused(f"{kind}: an fpd.torch module over stored E is refused, naming expand_free",
                           lambda: ft.FPDEmbeddingBag._from_layer(s), ValueError, "float32", kind, "expand_free")
        pk = pickle.loads(pickle.dumps(s))
        report(f"{kind}: pickling keeps E as the same stored rows",
               pk.free_stored == kind and np.array_equal(pk.free_stored_rows, want_rows))
        pk_ = os.path.join(WORK, f"stored-{kind}-kept.safetensors")
        fpd.save(pk_, {"emb": s})
        h, m_, d = read_safetensors(pk_)
        report(f"{kind}: fpd.save of the stored layer without free_dtype keeps its rows and kind",
               np.array_equal(st_tensor(h, d, "emb.fpd.free"), want_rows) and
               json.loads(m_["fpd.table.emb"])["free_dtype"] == kind, str(m_.get("fpd.table.emb")))
        p32 = os.path.join(WORK, f"stored-{kind}-f32.safetensors")
        fpd.save(p32, {"emb": s}, free_dtype="core")
        h, _, d = read_safetensors(p32)
        report(f"{kind}: fpd.save(free_dtype='core') of the stored layer writes the decoded E in F32",
               np.array_equal(st_tensor(h, d, "emb.fpd.free"), want_e))
        s.expand_free()
        report(f"{kind}: expand_free gives the quantizer's E", s.free_stored is None and
               np.array_equal(s.free_e, want_e))


def main():
    rng = np.random.default_rng(11)
    for t in (test_numpy, test_sym, test_sym_cli, test_qat, test_stored, test_torch_module):
        try:
            t(rng)
        except Exception:
            import traceback
            report(f"{t.__name__} ran", False, traceback.format_exc()[-1500:])
    return finish()


if __name__ == "__main__":
    sys.exit(main())
