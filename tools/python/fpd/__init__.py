"""fpd: libfpd from Python, over libfpd.so with ctypes (no compiler, no build step).

FPD layers (DESIGN.md section 2: a sum of p tensor trains of k cores standing for an
embedding table W [N, D]) on NumPy arrays:

    import numpy as np, fpd
    W = np.random.default_rng(0).standard_normal((20000, 64), dtype=np.float32)
    layer, report = fpd.fit(W, rank=16)              # libfpd's fit (TT-SVD, ALS, Adam)
    rows = layer.lookup([3, 14, 15])                 # [3, 64] float32
    eng = fpd.Engine(layer)                          # batched EmbeddingBag forward/backward
    out = eng.forward(ids, offsets, mode="sum")      # [bags, 64]
    eng.backward(grad_out); g0 = eng.grad(0)         # core gradients, as the cores' shapes
    fpd.save("t.fpd.safetensors", {"T": layer}, references={"T": W})
    with fpd.open("t.fpd.safetensors") as ck:        # FPD v1 checkpoints
        layer = ck.load_layer("T")
    fpd.suggest(10**7, 128)                          # the (r, p) heuristic (fpd-suggest)
    rep = fpd.compress("model.safetensors", "model.fpd.safetensors")   # fpd-compress, report dict
    fpd.ncf_eval("gmf.safetensors", "test.rating", "test.negative")    # HR@10, NDCG@10 (fpd-eval)

Errors of the library raise FPDError (a RuntimeError) with .status (a Status) and the
library's message. PyTorch modules are in fpd.torch. Where libfpd.so is looked for:
see fpd._lib (FPD_LIBRARY, the source tree's build/, then find_library("fpd")).
"""
import copy
import ctypes
import enum
import json
import math
import os
import threading
import weakref

import numpy as np

from . import _lib
from ._lib import (BagBatch, EngineParams, Error, ErrorStats, FitReport, InitParams, LayerShape,
                   NcfMetrics, Plan, PlanParams, RowwiseTable, TableMeta, TableView, TensorInfo, Suggestion)

__all__ = ["FPDError", "Status", "Layer", "Engine", "Checkpoint", "open", "save", "fit", "plan", "suggest",
           "embedding_bag", "compress", "ncf_eval", "version", "build_features", "library_path"]


class Status(enum.IntEnum):
    """enum fpd_status."""
    OK = 0
    NOMEM = 1
    IO = 2
    FORMAT = 3
    INVALID_ARG = 4
    SHAPE = 5
    DTYPE = 6
    UNSUPPORTED = 7
    BACKEND = 8
    NUMERIC = 9
    CONFIG = 10
    CANCELLED = 11


class FPDError(RuntimeError):
    """A libfpd call failed: .status (Status), .message (the library's message),
    .line/.column (1-based, configuration errors only, else 0)."""

    def __init__(self, status, message, line=0, column=0):
        self.status = Status(status) if status in Status._value2member_map_ else status
        self.message = message
        self.line, self.column = line, column
        name = self.status.name if isinstance(self.status, Status) else str(status)
        super().__init__(f"{message} [{name}]")


def _check(st, err):
    if st != 0:
        raise FPDError(st, err.msg.decode("utf-8", "replace"), err.line, err.column)


def _call(name, *args):
    """Call fpd function `name` with args + (err,), raising FPDError on failure."""
    err = Error()
    st = getattr(_lib.load(), name)(*args, ctypes.byref(err))
    _check(st, err)


def version():
    """libfpd's version string."""
    return _lib.load().fpd_version().decode()


def build_features():
    """libfpd's build features, e.g. "cpu openblas lapacke"."""
    return _lib.load().fpd_build_features().decode()


def library_path():
    """Path of the libfpd.so in use."""
    return _lib.path()


def _i64(a):
    return np.ascontiguousarray(a, dtype=np.int64)


def _ptr(a, ctype):
    return a.ctypes.data_as(ctypes.POINTER(ctype)) if a is not None else None


def _free_kinds_text():
    """The accepted free_dtype values, for messages: "int8, int4, int8-sym or int4-sym"."""
    names = _lib.FREE_KIND_NAMES
    return ", ".join(names[:-1]) + " or " + names[-1]


def _dtype_of(a):
    """FPD dtype number of a NumPy float array."""
    m = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.float16): "F16"}
    d = np.dtype(a.dtype).newbyteorder("=")
    if d not in m:
        raise TypeError(f"dtype {a.dtype} is not a float dtype libfpd reads (float32, float64, float16)")
    return _lib.DTYPE[m[d]]


def _table_view(W):
    """(TableView, keep-alive array) of a 2-D float array (made C-contiguous, native order)."""
    W = np.asarray(W)
    if W.ndim != 2:
        raise ValueError(f"a table must be 2-D [rows, dim], got shape {W.shape}")
    if W.dtype.kind != "f" or W.dtype.itemsize not in (2, 4, 8):
        W = W.astype(np.float32)
    W = np.ascontiguousarray(W, dtype=W.dtype.newbyteorder("="))
    return TableView(W.ctypes.data, _dtype_of(W), W.shape[0], W.shape[1]), W


def _shape_dict(s):
    k = s.k
    return {"rows": s.rows, "dim": s.dim, "k": k, "terms": s.terms, "row_shape": list(s.row_shape[:k]),
            "col_shape": list(s.col_shape[:k]), "ranks": list(s.ranks[:k + 1])}


def _make_shape(rows, dim, row_shape, col_shape, ranks, terms=1):
    k = len(row_shape)
    if not 1 <= k <= _lib.MAX_MODES or len(col_shape) != k or len(ranks) != k + 1:
        raise ValueError(f"row_shape, col_shape and ranks must have k, k and k+1 entries with 1 <= k <= "
                         f"{_lib.MAX_MODES}; got {len(row_shape)}, {len(col_shape)}, {len(ranks)}")
    s = LayerShape()
    s.rows, s.dim, s.k, s.terms = int(rows), int(dim), k, int(terms)
    for m in range(k):
        s.row_shape[m], s.col_shape[m] = int(row_shape[m]), int(col_shape[m])
    for m in range(k + 1):
        s.ranks[m] = int(ranks[m])
    _call("fpd_layer_shape_check", ctypes.byref(s))
    return s


# ------------------------------------------------------------------ the layer


class Layer:
    """An FPD layer (struct fpd_layer): F32 cores [p, n_m, r_m, d_m, r_{m+1}], an
    optional row permutation. Make one with fit(), Layer.init() (random cores for
    training from scratch), Layer.from_cores() or Checkpoint.load_layer().

    .cores are NumPy views of the library's own core memory (no copy; writable): what
    is written there is what look-ups and engines read. A view keeps the layer alive.
    .info holds the table's provenance for checkpoints (fit, seed, source_dtype)."""

    def __init__(self, handle, info=None):
        if not handle:
            raise ValueError("Layer() needs a handle; use fpd.fit, Layer.init, Layer.from_cores or Checkpoint")
        self._h = ctypes.c_void_p(handle)
        self._free = weakref.finalize(self, _lib.load().fpd_layer_free, self._h)
        self.info = dict(info or {})

    # -- constructors
    @classmethod
    def zeros(cls, rows, dim, row_shape, col_shape, ranks, terms=1):
        """A layer with zero cores of the given shape (fpd_layer_init)."""
        s = _make_shape(rows, dim, row_shape, col_shape, ranks, terms)
        h = ctypes.c_void_p()
        _call("fpd_layer_init", ctypes.byref(s), ctypes.byref(h))
        return cls(h.value)

    @classmethod
    def from_cores(cls, cores, rows, row_perm=None, info=None):
        """A layer holding copies of `cores` (k arrays [p, n_m, r_m, d_m, r_{m+1}], any
        float dtype; shapes define the layer) for a table of `rows` rows."""
        cores = [np.asarray(c) for c in cores]
        if not cores or any(c.ndim != 5 for c in cores):
            raise ValueError("cores must be k >= 1 arrays of 5 dimensions [p, n_m, r_m, d_m, r_{m+1}]")
        p = cores[0].shape[0]
        ranks = [c.shape[2] for c in cores] + [cores[-1].shape[4]]
        for m, c in enumerate(cores):
            if c.shape[0] != p or (m > 0 and c.shape[2] != cores[m - 1].shape[4]):
                raise ValueError(f"core {m} has shape {c.shape}: terms or ranks do not chain with core {m - 1}")
        layer = cls.zeros(rows, int(np.prod([c.shape[3] for c in cores])), [c.shape[1] for c in cores],
                          [c.shape[3] for c in cores], ranks, p)
        for dst, src in zip(layer.cores, cores):
            dst[...] = src
        if row_perm is not None:
            layer.set_row_perm(row_perm)
        layer.info = dict(info or {})
        return layer

    @classmethod
    def init(cls, rows, dim, rank=None, terms=None, k=None, kind="normal", scale=1.0, seed=0, row_shape=None,
             col_shape=None, ranks=None):
        """Random cores for training from scratch (fpd_init): the reconstructed table
        has mean 0 and variance scale^2 (kind "normal", as torch.nn.Embedding's
        normal(0, 1)) or scale^2 / 3 (kind "uniform", as uniform(-scale, scale)).
        The shape is the heuristic's (plan()) unless row_shape, col_shape and ranks
        are all given."""
        if row_shape is None:
            s = plan(rows, dim, rank=rank, terms=terms, k=k, min_rows=1, min_ratio=0.0)["_shape"]
        else:
            s = _make_shape(rows, dim, row_shape, col_shape, ranks, terms or 1)
        ip = InitParams(_lib.INIT_KIND[kind], float(scale), int(seed))
        h = ctypes.c_void_p()
        _call("fpd_init", ctypes.byref(s), ctypes.byref(ip), ctypes.byref(h))
        return cls(h.value, {"fit": "init", "seed": int(seed), "source_dtype": "F32"})

    # -- shape
    @property
    def _shape(self):
        return _lib.load().fpd_layer_get_shape(self._h).contents

    @property
    def shape(self):
        """dict: rows, dim, k, terms, row_shape, col_shape, ranks."""
        return _shape_dict(self._shape)

    rows = property(lambda self: self._shape.rows)
    dim = property(lambda self: self._shape.dim)
    k = property(lambda self: self._shape.k)
    terms = property(lambda self: self._shape.terms)
    row_shape = property(lambda self: list(self._shape.row_shape[:self.k]))
    col_shape = property(lambda self: list(self._shape.col_shape[:self.k]))
    ranks = property(lambda self: list(self._shape.ranks[:self.k + 1]))

    @property
    def params(self):
        """Parameters of all cores."""
        return _lib.load().fpd_layer_shape_params(ctypes.byref(self._shape))

    def core_shape(self, m):
        s = self._shape
        return (s.terms, s.row_shape[m], s.ranks[m], s.col_shape[m], s.ranks[m + 1])

    def core(self, m):
        """Core m as a writable float32 view of the layer's memory (no copy)."""
        if not 0 <= m < self.k:
            raise IndexError(f"core {m} of a layer with {self.k} cores")
        shape = self.core_shape(m)
        n = int(np.prod(shape))
        ptr = ctypes.cast(_lib.load().fpd_layer_core(self._h, m), ctypes.c_void_p).value
        buf = (ctypes.c_float * n).from_address(ptr)
        buf._fpd_owner = self  # the view keeps the layer (and so its memory) alive
        return np.frombuffer(buf, dtype=np.float32).reshape(shape)

    @property
    def cores(self):
        """[core(0), .., core(k-1)]: views of the layer's memory."""
        return [self.core(m) for m in range(self.k)]

    @property
    def row_perm(self):
        """A copy of the row permutation (int64 [rows]: original row i is stored at
        row_perm[i]), or None for the identity."""
        p = _lib.load().fpd_layer_row_perm(self._h)
        if not p:
            return None
        return np.ctypeslib.as_array(p, shape=(self.rows,)).copy()

    def set_row_perm(self, perm):
        """Set (a copy of) the permutation, or remove it with None."""
        if perm is None:
            _call("fpd_layer_set_row_perm", self._h, None)
            return
        perm = _i64(perm).reshape(-1)
        if perm.size != self.rows:
            raise ValueError(f"row_perm has {perm.size} entries; the table has {self.rows} rows")
        _call("fpd_layer_set_row_perm", self._h, _ptr(perm, ctypes.c_int64))

    # -- free coordinates (format extension free/1): row i = FPD(i) + E[i] P
    @property
    def free_coords(self):
        """c, the free coordinates per row (0: none)."""
        return _lib.load().fpd_layer_get_free_coords(self._h)

    def _free_view(self, which):
        c = self.free_coords
        if c == 0:
            return None
        if which == "e" and self.free_stored:
            raise ValueError(f"E is held as stored {self.free_stored} rows (look-ups only); expand_free() gives "
                             "it back in float32")
        shape = (self.rows, c) if which == "e" else (c, self.dim)
        fn = _lib.load().fpd_layer_get_free_e if which == "e" else _lib.load().fpd_layer_get_free_p
        buf = (ctypes.c_float * int(np.prod(shape))).from_address(ctypes.cast(fn(self._h), ctypes.c_void_p).value)
        buf._fpd_owner = self
        return np.frombuffer(buf, dtype=np.float32).reshape(shape)

    @property
    def free_e(self):
        """E [rows, c] (original row order) as a writable float32 view of the layer's
        memory, or None without free coordinates. Valid until set_free_coords."""
        return self._free_view("e")

    @property
    def free_p(self):
        """P [c, dim] as a writable float32 view, or None."""
        return self._free_view("p")

    def set_free_coords(self, c, E=None, P=None):
        """Give the layer c free coordinates per row (fpd_layer_set_free_coords): copies
        of E [rows, c] and P [c, dim] (None: zeros); c = 0 removes them."""
        c = int(c)
        keep = []
        args = []
        for arr, shape in ((E, (self.rows, c)), (P, (c, self.dim))):
            if arr is None or c == 0:
                args.append(None)
                continue
            a = np.ascontiguousarray(arr, dtype=np.float32)
            if a.shape != shape:
                raise ValueError(f"free coordinates: got shape {a.shape}; {shape} expected")
            keep.append(a)
            args.append(_ptr(a, ctypes.c_float))
        _call("fpd_layer_set_free_coords", self._h, c, args[0], args[1])
        del keep

    def quantize_free(self, kind):
        """Round E to what a file stores with free_dtype=kind ("int8" or "int4": FBGEMM's
        fused row-wise rows, extension free-rowwise/1; "int8-sym" or "int4-sym":
        symmetric codes and an F16 scale a row, extension free-sym/1), in place
        (fpd_layer_quantize_free): the layer then looks up what such a file holds."""
        if kind not in _lib.FREE_KINDS:
            raise ValueError(f"kind must be {_free_kinds_text()}, got {kind!r}")
        _call("fpd_layer_quantize_free", self._h, _lib.FREE_KINDS[kind])

    @property
    def free_stored(self):
        """The kind E is held in as stored rows ("int8", "int4", "int8-sym", "int4-sym";
        store_free, Checkpoint.load_layer(free_stored=True)), or None when E is float32
        or absent."""
        k = ctypes.c_int(-1)
        if not _lib.load().fpd_layer_get_free_stored(self._h, ctypes.byref(k)):
            return None
        return _lib.FREE_KIND_NAMES[k.value]

    def store_free(self, kind):
        """Hold E as the rows a file with free_dtype=kind stores (fpd_layer_store_free):
        a fraction of the memory (int4-sym, c = 10: 7 bytes a row instead of 40); look-ups
        and Engine forwards give bit for bit what quantize_free(kind) gives; training
        (Engine backward/step, FPDEmbeddingBag's backward) is refused until
        expand_free(). free_e raises while E is stored."""
        if kind not in _lib.FREE_KINDS:
            raise ValueError(f"kind must be {_free_kinds_text()}, got {kind!r}")
        _call("fpd_layer_store_free", self._h, _lib.FREE_KINDS[kind])

    @property
    def free_stored_rows(self):
        """The stored rows of E as a read-only uint8 view [rows, row bytes] (the file's
        layout of kind free_stored), or None when E is float32 or absent."""
        return self._free_rows_view(False)

    def _free_rows_view(self, writable):
        """free_stored_rows, writable when asked (fpd.torch's buffer: whoever writes
        through it must have the rows checked again, set_free_stored)."""
        k = ctypes.c_int(-1)
        L = _lib.load()
        ptr = L.fpd_layer_get_free_stored(self._h, ctypes.byref(k))
        if not ptr:
            return None
        rb = L.fpd_free_row_bytes(k.value, self.free_coords)
        buf = (ctypes.c_uint8 * (self.rows * rb)).from_address(ptr)
        buf._fpd_owner = self
        a = np.frombuffer(buf, dtype=np.uint8).reshape(self.rows, rb)
        a.flags.writeable = bool(writable)
        return a

    def set_free_stored(self, kind, rows, P=None):
        """Give the layer free coordinates with E as stored rows (fpd_layer_set_free_stored):
        a copy of rows, a uint8 array [self.rows, row bytes] in the layout of a file with
        free_dtype=kind ("int8", "int4", "int8-sym", "int4-sym"; row bytes from c), and
        of P [c, dim]; c is P's first dimension. P None keeps the layer's P (and its c;
        ValueError when it has none). Each row is checked as a reader checks it (a
        negative, NaN or Inf scale is refused, naming the row); replaces E. rows of
        another dtype are refused (TypeError), not converted."""
        if kind not in _lib.FREE_KINDS:
            raise ValueError(f"kind must be {_free_kinds_text()}, got {kind!r}")
        if P is None:
            if not self.free_coords:
                raise ValueError("set_free_stored: give P [c, dim] (the layer has no free coordinates to keep P of)")
            P = self.free_p.copy()
        c = int(np.shape(P)[0])
        rb = _lib.load().fpd_free_row_bytes(_lib.FREE_KINDS[kind], c)
        if not isinstance(rows, np.ndarray) or rows.dtype != np.uint8:
            raise TypeError(f"set_free_stored: rows must be a uint8 NumPy array (the file's bytes), got "
                            f"{getattr(rows, 'dtype', type(rows).__name__)}")
        q = np.ascontiguousarray(rows)
        if q.shape != (self.rows, rb):
            raise ValueError(f"set_free_stored: rows has shape {q.shape}; ({self.rows}, {rb}) expected ({kind}, c = {c})")
        p = np.ascontiguousarray(P, dtype=np.float32)
        if p.shape != (c, self.dim):
            raise ValueError(f"set_free_stored: P has shape {p.shape}; ({c}, {self.dim}) expected")
        _call("fpd_layer_set_free_stored", self._h, c, _lib.FREE_KINDS[kind], q.ctypes.data, _ptr(p, ctypes.c_float))

    def _free_e_copy(self):
        """E as float32 (a copy; stored rows decoded), or None."""
        if not self.free_coords:
            return None
        if not self.free_stored:
            return self.free_e.copy()
        c = self.clone()
        c.expand_free()
        return c.free_e.copy()

    def expand_free(self):
        """Hold E in float32 again (its stored rows decoded; fpd_layer_expand_free)."""
        _call("fpd_layer_expand_free", self._h)

    @property
    def free_memory_bytes(self):
        """Bytes E and P take in memory now (fpd_layer_free_memory_bytes)."""
        return _lib.load().fpd_layer_free_memory_bytes(self._h)

    @property
    def param_count(self):
        """Parameters of the cores plus c (rows + dim) of the free coordinates."""
        return _lib.load().fpd_layer_param_count(self._h)

    # -- values
    def lookup(self, idx):
        """Rows idx (original row ids, any shape) -> float32 [*idx.shape, dim]
        (fpd_layer_lookup). An id out of [0, rows) raises IndexError."""
        idx = np.asarray(idx)
        flat = _i64(idx).reshape(-1)
        out = np.empty((flat.size, self.dim), dtype=np.float32)
        if flat.size:
            if flat.min() < 0 or flat.max() >= self.rows:
                bad = flat[(flat < 0) | (flat >= self.rows)][0]
                raise IndexError(f"row id {bad} is out of range [0, {self.rows})")
            _call("fpd_layer_lookup", self._h, _ptr(flat, ctypes.c_int64), flat.size, _ptr(out, ctypes.c_float))
        return out.reshape(idx.shape + (self.dim,))

    def reconstruct(self, begin=0, end=None):
        """Dense rows [begin, end) (default: the whole table), float32."""
        end = self.rows if end is None else end
        out = np.empty((max(end - begin, 0), self.dim), dtype=np.float32)
        _call("fpd_layer_reconstruct", self._h, begin, end, _ptr(out, ctypes.c_float))
        return out

    def error(self, W):
        """dict rel_error, cos_mean, cos_min against the dense table W [rows, dim]
        (fpd_layer_error)."""
        tv, keep = _table_view(W)
        st = ErrorStats()
        _call("fpd_layer_error", self._h, ctypes.byref(tv), ctypes.byref(st))
        del keep
        return {"rel_error": st.rel_error, "cos_mean": st.cos_mean, "cos_min": st.cos_min}

    def clone(self):
        h = ctypes.c_void_p()
        _call("fpd_layer_clone", self._h, ctypes.byref(h))
        return Layer(h.value, self.info)

    def __repr__(self):
        s = self.shape
        fc = self.free_coords
        return (f"fpd.Layer(rows={s['rows']}, dim={s['dim']}, terms={s['terms']}, row_shape={s['row_shape']}, "
                f"col_shape={s['col_shape']}, ranks={s['ranks']}" + (f", free_coords={fc}" if fc else "") +
                (f", free_stored={self.free_stored!r})" if fc and self.free_stored else ")"))

    # pickling (torch.save of a module, copy.deepcopy): cores, permutation, info, free coordinates
    def __reduce__(self):
        fp = self.free_p
        if self.free_stored:  # E as stored rows: their bytes
            return (_layer_from_state, (self.rows, [c.copy() for c in self.cores], self.row_perm, self.info, None,
                                        fp.copy(), self.free_stored, self.free_stored_rows.copy()))
        fe = self.free_e
        return (_layer_from_state, (self.rows, [c.copy() for c in self.cores], self.row_perm, self.info,
                                    None if fe is None else fe.copy(), None if fp is None else fp.copy()))


def _layer_from_state(rows, cores, perm, info, free_e=None, free_p=None, free_stored=None, free_rows=None):
    layer = Layer.from_cores(cores, rows, perm, info)
    if free_e is not None:
        layer.set_free_coords(free_e.shape[1], free_e, free_p)
    if free_stored is not None:
        layer.set_free_stored(free_stored, free_rows, free_p)
    return layer


# ------------------------------------------------------------------ fit, plan, suggest


def _plan_params(rank=None, terms=None, k=None, budget=None, ratio=None, max_error=None, min_rows=None,
                 min_ratio=None, core_dtype="F32", table=None):
    pp = _lib.load().fpd_plan_default_params()
    pp.rank, pp.terms, pp.k = int(rank or 0), int(terms or 0), int(k or 0)
    if min_rows is not None:
        pp.min_rows = int(min_rows)
    if min_ratio is not None:
        pp.min_ratio = float(min_ratio)
    pp.core_dtype = _lib.DTYPE[core_dtype]
    pp.budget_bytes = int(budget or 0)
    pp.min_ratio_target = float(ratio or 0.0)
    pp.max_error = float(max_error or 0.0)
    keep = None
    if table is not None:
        tv, keep = _table_view(table)
        pp.table = ctypes.pointer(tv)
    return pp, keep


def plan(rows, dim, dtype="F32", table=None, rank=None, terms=None, k=None, budget=None, ratio=None,
         max_error=None, min_rows=None, min_ratio=None, core_dtype="F32"):
    """The plan for one table (fpd_plan_table): dict compress, reason, shape (rows,
    dim, k, terms, row_shape, col_shape, ranks), params, padding, bytes_before,
    bytes_after, ratio, predicted_error (NaN without `table`). budget is in bytes of
    the cores; ratio a minimum compression ratio; max_error needs `table`."""
    pp, keep = _plan_params(rank, terms, k, budget, ratio, max_error, min_rows, min_ratio, core_dtype, table)
    out = Plan()
    _call("fpd_plan_table", int(rows), int(dim), _lib.DTYPE[dtype], ctypes.byref(pp), ctypes.byref(out))
    del keep
    return {"compress": out.compress, "reason": out.reason.decode(), "shape": _shape_dict(out.shape),
            "params": out.params, "padding": out.padding, "bytes_before": out.bytes_before,
            "bytes_after": out.bytes_after, "ratio": out.ratio, "predicted_error": out.predicted_error,
            "_shape": out.shape}


def suggest(rows, dim, dtype="F32", table=None, rank=None, terms=None, k=None, budget=None, ratio=None,
            max_error=None, min_rows=None, min_ratio=None, core_dtype="F32"):
    """The (r, p) heuristic (fpd_suggest, the engine of fpd-suggest): dict with
    candidates (ranked, best first; each r, p, k, row_shape, col_shape, ranks,
    params, padding, bytes, ratio, score, predicted_error, dominated, eligible),
    selected (index, or -1 when no candidate meets max_error), compress, reason,
    errors_known, estimate, and the heuristic's g, R0, h, R* (col_rank,
    saturation_rank, rank_step, target_rank). With `table` (the data, [rows, dim])
    each candidate gets a predicted relative error."""
    pp, keep = _plan_params(rank, terms, k, budget, ratio, max_error, min_rows, min_ratio, core_dtype, table)
    L = _lib.load()
    sp = ctypes.POINTER(Suggestion)()
    _call("fpd_suggest", int(rows), int(dim), _lib.DTYPE[dtype], ctypes.byref(pp), ctypes.byref(sp))
    try:
        s = sp.contents
        cands = []
        for i in range(s.n_candidates):
            c = s.candidates[i]
            d = _shape_dict(c.shape)
            cands.append({"r": c.r, "p": c.shape.terms, "k": c.shape.k, "row_shape": d["row_shape"],
                          "col_shape": d["col_shape"], "ranks": d["ranks"], "params": c.params,
                          "padding": c.padding, "bytes": c.bytes, "ratio": c.ratio, "score": c.score,
                          "predicted_error": c.predicted_error, "dominated": c.dominated, "eligible": c.eligible,
                          "free_coords": c.free_coords})
        return {"rows": s.rows, "dim": s.dim, "bytes_before": s.bytes_before, "k_default": s.k_default,
                "col_rank": s.col_rank, "saturation_rank": s.saturation_rank, "rank_step": s.rank_step,
                "target_rank": s.target_rank, "candidates": cands, "selected": s.selected, "compress": s.compress,
                "reason": s.reason.decode(), "errors_known": s.errors_known, "estimate": s.estimate.decode()}
    finally:
        L.fpd_suggestion_free(sp)
        del keep


def fit(W, rank=None, terms=None, k=None, budget=None, ratio=None, max_error=None, shape=None, als_sweeps=2,
        epochs=1, seed=0, cluster_rows=False, row_weights=None, free_coords=0):
    """Fit an FPD layer to the dense table W [N, D] (float32/64/16) with libfpd's fit
    (fpd_fit: TT-SVD, backfitting for p > 1, ALS sweeps, Adam finetuning epochs).
    The shape is the heuristic's (plan() with rank, terms, k, budget, ratio,
    max_error), or `shape` (a dict as Layer.shape). Returns (Layer, report dict:
    rel_error_fit, rel_error_als, rel_error_final, als_sweeps, backfit_sweeps,
    finetune_epochs, finetune_kept, fit_seconds, finetune_seconds, rel_error_free).
    free_coords c > 0 ends the fit with c free coordinates per row from the residual's
    top c directions (fpd_fit_free_coords; format extension free/1)."""
    tv, keep = _table_view(W)
    N, D = keep.shape
    if shape is not None:
        s = _make_shape(N, D, shape["row_shape"], shape["col_shape"], shape["ranks"], shape.get("terms", 1))
    else:
        s = plan(N, D, table=keep if max_error else None, rank=rank, terms=terms, k=k, budget=budget, ratio=ratio,
                 max_error=max_error, min_rows=1, min_ratio=0.0)["_shape"]
    fp = _lib.load().fpd_fit_default_params()
    fp.als_sweeps, fp.finetune_epochs, fp.seed, fp.cluster_rows = int(als_sweeps), int(epochs), int(seed), cluster_rows
    fp.free_coords = int(free_coords)
    wkeep = None
    if row_weights is not None:
        wkeep = np.ascontiguousarray(row_weights, dtype=np.float64).reshape(-1)
        if wkeep.size != N:
            raise ValueError(f"row_weights has {wkeep.size} entries; the table has {N} rows")
        fp.row_weights = _ptr(wkeep, ctypes.c_double)
    h = ctypes.c_void_p()
    rep = FitReport()
    _call("fpd_fit", ctypes.byref(tv), ctypes.byref(s), ctypes.byref(fp), ctypes.byref(h), ctypes.byref(rep))
    src = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.float16): "F16"}[keep.dtype]
    fitname = ("tt-svd" if s.terms == 1 else "backfit") + ("+als" if rep.als_sweeps else "") + \
        ("+adam" if rep.finetune_kept else "")
    layer = Layer(h.value, {"fit": fitname, "seed": int(seed), "source_dtype": src})
    report = {f: getattr(rep, f) for f, _ in FitReport._fields_}
    return layer, report


# ------------------------------------------------------------------ the engine


def _batch(indices, offsets=None, mode="sum", per_sample_weights=None, padding_idx=None,
           include_last_offset=False):
    """(BagBatch, arrays to keep alive, out rows, output shape) for a NumPy batch, as
    torch.nn.functional.embedding_bag takes it: indices 1-D with offsets, or 2-D
    [bags, L] (fixed-size bags) without; mode "none" keeps indices' shape."""
    if mode not in _lib.BAG_MODE:
        raise ValueError(f"mode must be one of {', '.join(_lib.BAG_MODE)}, not {mode!r}")
    idx = np.asarray(indices)
    flat = _i64(idx).reshape(-1)
    b = BagBatch()
    b.indices = _ptr(flat, ctypes.c_int64)
    b.n_indices = flat.size
    b.mode = _lib.BAG_MODE[mode]
    b.padding_idx = -1 if padding_idx is None else int(padding_idx)
    b.include_last_offset = bool(include_last_offset)
    keep = [flat]
    if mode == "none":
        out_shape = idx.shape
    elif idx.ndim == 2:
        if offsets is not None:
            raise ValueError("offsets must be None when indices is 2-D")
        b.bag_size = idx.shape[1]
        out_shape = (idx.shape[0],)
        if idx.shape[1] == 0:  # bags of nothing: offsets of zeros
            offs = np.zeros(idx.shape[0], dtype=np.int64)
            keep.append(offs)
            b.offsets, b.n_bags, b.include_last_offset = _ptr(offs, ctypes.c_int64), offs.size, False
    elif idx.ndim == 1:
        if offsets is None:
            raise ValueError("offsets is required when indices is 1-D")
        offs = _i64(offsets).reshape(-1)
        keep.append(offs)
        b.offsets, b.n_bags = _ptr(offs, ctypes.c_int64), offs.size
        out_shape = (max(offs.size - 1, 0) if include_last_offset else offs.size,)
    else:
        raise ValueError(f"indices must be 1-D (with offsets) or 2-D, got {idx.ndim}-D")
    if per_sample_weights is not None:
        w = np.ascontiguousarray(per_sample_weights, dtype=np.float32).reshape(-1)
        if w.size != flat.size:
            raise ValueError(f"per_sample_weights has {w.size} entries; indices has {flat.size}")
        keep.append(w)
        b.per_sample_weights = _ptr(w, ctypes.c_float)
    return b, keep, int(np.prod(out_shape)), out_shape


class Engine:
    """A libfpd engine over a layer (fpd_engine_init): batched EmbeddingBag forward,
    backward to core gradients, optimizer steps that update the layer's cores in place.

        eng = fpd.Engine(layer, optimizer="adam", lr=1e-2)
        out = eng.forward(ids, offsets, mode="mean")   # [bags, D] float32
        eng.backward(grad_out)                        # accumulates dL/dcores
        eng.step()                                    # updates layer.cores, clears the gradient

    free_qat (a kind of E as stored: "int8", "int4", "int8-sym", "int4-sym"; None: off)
    trains the free coordinates quantization-aware (fpd_engine_params.free_qat): the
    forward uses E's rows as a file of that free_dtype stores them, the gradient of E
    passes straight through to the F32 E the optimizer steps.

    Calls are serialized by a lock; the library releases the GIL while it works."""

    def __init__(self, layer, threads=0, optimizer="lazy_adam", lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                 lr_scale=None, free_qat=None):
        if free_qat is not None and free_qat not in _lib.FREE_KINDS:
            raise ValueError(f"free_qat must be None or {_free_kinds_text()}, got {free_qat!r}")
        L = _lib.load()
        p = L.fpd_engine_default_params()
        p.threads = int(threads)
        p.optimizer.kind = _lib.OPTIMIZER[optimizer]
        p.optimizer.learning_rate, p.optimizer.eps = float(lr), float(eps)
        p.optimizer.beta1, p.optimizer.beta2 = float(betas[0]), float(betas[1])
        for m, v in enumerate(lr_scale or []):
            p.optimizer.lr_scale[m] = float(v)
        if free_qat is not None:
            p.free_qat, p.free_qat_kind = True, _lib.FREE_KINDS[free_qat]
        self.free_qat = free_qat
        h = ctypes.c_void_p()
        _call("fpd_engine_init", layer._h, ctypes.byref(p), ctypes.byref(h))
        self._h = h
        self.layer = layer  # borrowed by the engine: keep it alive
        self._free = weakref.finalize(self, L.fpd_engine_free, h)
        self._lock = threading.Lock()
        self._last = None   # (BagBatch, keep-alive arrays, out rows, out shape) of the last forward
        self.forwards = 0   # number of forward calls (identifies the batch a backward belongs to)

    def forward(self, indices, offsets=None, mode="sum", per_sample_weights=None, padding_idx=None,
                include_last_offset=False, out=None):
        """Pooled rows, float32 [bags, D] ([*indices.shape, D] for mode "none"); see
        torch.nn.functional.embedding_bag for the arguments. Out-of-range ids raise
        FPDError (INVALID_ARG) naming the first one."""
        b = _batch(indices, offsets, mode, per_sample_weights, padding_idx, include_last_offset)
        return self._forward(b, out)

    def _forward(self, b, out=None):
        D = self.layer.dim
        if out is None:
            out = np.empty((b[2], D), dtype=np.float32)
        elif out.dtype != np.float32 or not out.flags.c_contiguous or out.size != b[2] * D:
            raise ValueError(f"out must be a C-contiguous float32 array of {b[2]} x {D}")
        with self._lock:
            _call("fpd_engine_forward", self._h, ctypes.byref(b[0]), _ptr(out, ctypes.c_float))
            self._last = b
            self.forwards += 1
        return out.reshape(b[3] + (D,))

    def backward(self, grad_out):
        """Add the gradient of the last forward's output (grad_out, as its output) to
        the engine's core gradients (fpd_engine_backward)."""
        if self._last is None:
            raise FPDError(Status.INVALID_ARG, "Engine.backward needs a forward first")
        self._backward(self._last, grad_out)

    def _backward(self, b, grad_out):
        """Backward of batch b (a _batch() tuple). The library differentiates its last
        forward; when another forward ran since b's (the same engine used twice in
        one graph), b's forward is run again first, into scratch."""
        g = np.ascontiguousarray(grad_out, dtype=np.float32)
        if g.size != b[2] * self.layer.dim:
            raise ValueError(f"grad_out has {g.size} values; the forward gave {b[2]} x {self.layer.dim}")
        with self._lock:
            if self._last is not b:
                scratch = np.empty((b[2], self.layer.dim), dtype=np.float32)
                _call("fpd_engine_forward", self._h, ctypes.byref(b[0]), _ptr(scratch, ctypes.c_float))
                self._last = b
                self.forwards += 1
            _call("fpd_engine_backward", self._h, ctypes.byref(b[0]), _ptr(g, ctypes.c_float))

    def grad(self, m, copy=True):
        """The accumulated gradient of core m (float32, the core's shape; zeros where
        no row touched it) and the touched slice numbers t * n_m + i_m (int64)."""
        g = ctypes.POINTER(ctypes.c_float)()
        sl = ctypes.POINTER(ctypes.c_int64)()
        n = ctypes.c_int64()
        k, c = self.layer.k, self.layer.free_coords
        if m == k and c:  # free coordinates: dL/dE [rows, c] (slices: touched rows), dL/dP [c, dim]
            shape = (self.layer.rows, c)
        elif m == k + 1 and c:
            shape = (c, self.layer.dim)
        elif 0 <= m < k:
            shape = self.layer.core_shape(m)
        else:
            raise IndexError(f"gradient {m} of a layer with {k} cores and {c} free coordinates")
        with self._lock:
            _lib.load().fpd_engine_grad(self._h, m, ctypes.byref(g), ctypes.byref(sl), ctypes.byref(n))
            arr = np.ctypeslib.as_array(g, shape=(int(np.prod(shape)),)).reshape(shape)
            slices = np.ctypeslib.as_array(sl, shape=(n.value,)).copy() if n.value else np.zeros(0, np.int64)
            return (arr.copy() if copy else arr), slices

    def step(self):
        """One optimizer step on the accumulated gradient (updates the layer's cores),
        then clears the gradient."""
        with self._lock:
            _call("fpd_engine_step", self._h)

    def zero_grad(self):
        with self._lock:
            _lib.load().fpd_engine_zero_grad(self._h)

    @property
    def last_flops(self):
        return _lib.load().fpd_engine_last_flops(self._h)


def embedding_bag(layer, indices, offsets=None, mode="mean", per_sample_weights=None, padding_idx=None,
                  include_last_offset=False):
    """torch.nn.functional.embedding_bag over an FPD layer, on NumPy arrays (a
    transient one-thread engine); float32 [bags, D]."""
    return Engine(layer, threads=1).forward(indices, offsets, mode, per_sample_weights, padding_idx,
                                            include_last_offset)


# ------------------------------------------------------------------ checkpoints

_NP_OF = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I8": np.int8, "I16": np.int16,
          "I32": np.int32, "I64": np.int64, "U8": np.uint8, "U16": np.uint16, "U32": np.uint32, "U64": np.uint64,
          "BOOL": np.bool_, "C64": np.complex64}
_FPD_OF = {np.dtype(v): k for k, v in _NP_OF.items()}


class Checkpoint:
    """A safetensors checkpoint opened by libfpd's reader (fpd_safetensors_open:
    validated, memory-mapped). Use as a context manager or call close().

        with fpd.open("model.fpd.safetensors") as ck:
            ck.tables                     # FPD tables: ["user_embedding.weight", ...]
            layer = ck.load_layer("user_embedding.weight")
            ck.table_info("user_embedding.weight")   # rows, dim, shapes, fit, rel_error, ...
            w = ck.tensor("prediction.weight")       # any other tensor, as a NumPy copy
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        h = ctypes.c_void_p()
        _call("fpd_safetensors_open", self.path.encode(), ctypes.byref(h))
        self._h = h
        self._free = weakref.finalize(self, _lib.load().fpd_safetensors_free, h)

    def close(self):
        self._free()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _alive(self):
        if not self._free.alive:
            raise ValueError(f"{self.path}: checkpoint is closed")
        return _lib.load()

    @property
    def metadata(self):
        """The __metadata__ strings, as a dict."""
        L = self._alive()
        out = {}
        for i in range(L.fpd_safetensors_metadata_count(self._h)):
            k, v = ctypes.c_char_p(), ctypes.c_char_p()
            L.fpd_safetensors_metadata_at(self._h, i, ctypes.byref(k), ctypes.byref(v))
            out[k.value.decode()] = v.value.decode()
        return out

    @property
    def tensors(self):
        """{name: (dtype name, shape)} of every tensor, in file order."""
        L = self._alive()
        out = {}
        for i in range(L.fpd_safetensors_count(self._h)):
            t = L.fpd_safetensors_tensor(self._h, i).contents
            out[t.name.decode()] = (_lib.DTYPES[t.dtype], tuple(t.shape[:t.ndim]))
        return out

    @property
    def tables(self):
        """Names of the FPD tables (metadata keys fpd.table.T)."""
        return sorted(k[len("fpd.table."):] for k in self.metadata if k.startswith("fpd.table."))

    def table_info(self, name):
        """The checked metadata of FPD table `name` (fpd_checkpoint_check_table): dict
        rows, dim, k, terms, row_shape, col_shape, ranks, source_dtype, core_dtype,
        fit, seed, rel_error (NaN when absent), free_coords (0: none), free_dtype (E's
        stored dtype: "int8"/"int4" with free-rowwise/1, "int8-sym"/"int4-sym" with
        free-sym/1, else the core dtype; None without free coordinates) and
        vocabulary_order (True when the row order was folded into an id vocabulary,
        fpd-convert --vocabulary-out)."""
        L = self._alive()
        meta = TableMeta()
        _call("fpd_checkpoint_check_table", self._h, name.encode(), ctypes.byref(meta))
        d = _shape_dict(meta.shape)
        core = _lib.DTYPES[meta.core_dtype] if meta.core_dtype < len(_lib.DTYPES) else None
        d.update({"source_dtype": _lib.DTYPES[meta.source_dtype], "core_dtype": core,
                  "fit": meta.fit.decode(), "seed": meta.seed, "rel_error": meta.rel_error,
                  "free_coords": meta.free_coords,
                  "free_dtype": (None if not meta.free_coords else
                                 _lib.FREE_KIND_NAMES[meta.free_kind] if meta.free_rowwise else core),
                  "vocabulary_order": bool(meta.vocabulary_order)})
        del L
        return d

    def load_layer(self, name, free_stored=False):
        """FPD table `name` as a new Layer (fpd_checkpoint_load_layer: cores converted
        to F32, row_perm applied). free_stored=True keeps E as the file's rows when it
        stores them quantized (fpd_checkpoint_load_layer_stored; see Layer.store_free):
        for look-ups in a fraction of the memory."""
        self._alive()
        info = self.table_info(name)
        h = ctypes.c_void_p()
        _call("fpd_checkpoint_load_layer_stored" if free_stored else "fpd_checkpoint_load_layer", self._h,
              name.encode(), ctypes.byref(h))
        return Layer(h.value, {"fit": info["fit"], "seed": info["seed"], "source_dtype": info["source_dtype"]})

    @property
    def rowwise_tables(self):
        """Names of the row-wise quantized tables (metadata keys fpd.rowwise.T,
        extension rowwise/1: FBGEMM's fused int8/int4 rows)."""
        return sorted(k[len("fpd.rowwise."):] for k in self.metadata if k.startswith("fpd.rowwise."))

    def load_rowwise(self, name, verify=True):
        """Row-wise table `name` (fpd_checkpoint_load_rowwise) as a RowwiseTable whose
        lookup()/reconstruct() give dequantized float32 rows; verify (default) first
        checks every row's scale and bias are finite (fpd_checkpoint_verify_table)."""
        self._alive()
        q = RowwiseTable()
        _call("fpd_checkpoint_load_rowwise", self._h, name.encode(), ctypes.byref(q), None)
        if verify:
            _call("fpd_checkpoint_verify_table", self._h, name.encode(), True)
        return RowwiseView(self, name, q)

    def dense(self, name):
        """Table `name` as a dense float32 NumPy array [rows, dim], whatever its
        encoding: an FPD table reconstructed, a row-wise one dequantized, any other
        2-D tensor converted (as fpd-convert writes them)."""
        if name in self.tables:
            return self.load_layer(name).reconstruct()
        if name in self.rowwise_tables:
            return self.load_rowwise(name).reconstruct()
        return np.asarray(self.tensor(name), dtype=np.float32)

    def tensor(self, name):
        """Tensor `name` as a NumPy array (a copy; BF16 is widened to float32 exactly)."""
        L = self._alive()
        tp = L.fpd_safetensors_find(self._h, name.encode())
        if not tp:
            raise KeyError(f"{self.path} has no tensor '{name}'")
        t = tp.contents
        shape = tuple(t.shape[:t.ndim])
        raw = ctypes.string_at(t.data, t.nbytes) if t.nbytes else b""
        dt = _lib.DTYPES[t.dtype]
        if dt == "BF16":
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            return u.view(np.float32).reshape(shape)
        if dt not in _NP_OF:
            raise FPDError(Status.DTYPE, f"{self.path}: tensor '{name}' has dtype {dt}, which NumPy cannot hold")
        return np.frombuffer(raw, dtype=np.dtype(_NP_OF[dt]).newbyteorder("<")).astype(_NP_OF[dt]).reshape(shape)


class RowwiseView:
    """A row-wise quantized table of an open Checkpoint (borrows its memory map:
    valid while the checkpoint is open). kind is "int8" or "int4"."""

    def __init__(self, ck, name, q):
        self._ck, self.name, self._q = ck, name, q
        self.kind = {0: "int8", 1: "int4"}.get(q.kind, str(q.kind))
        self.rows, self.dim = q.rows, q.dim

    def lookup(self, idx):
        """Dequantized rows idx (any shape of ints) as float32 [*idx.shape, dim]."""
        self._ck._alive()
        i = _i64(idx)
        out = np.empty((i.size, self.dim), dtype=np.float32)
        _call("fpd_rowwise_lookup", ctypes.byref(self._q), _ptr(i, ctypes.c_int64), i.size,
              _ptr(out, ctypes.c_float))
        return out.reshape(tuple(np.shape(idx)) + (self.dim,))

    def reconstruct(self, begin=0, end=None):
        """Dequantized rows [begin, end) as float32 [end - begin, dim]."""
        self._ck._alive()
        end = self.rows if end is None else end
        out = np.empty((max(end - begin, 0), self.dim), dtype=np.float32)
        _call("fpd_rowwise_reconstruct", ctypes.byref(self._q), begin, end, _ptr(out, ctypes.c_float))
        return out

    def __repr__(self):
        return f"RowwiseView({self.name!r}, {self.kind}, [{self.rows}, {self.dim}])"


def open(path):  # noqa: A001 - fpd.open, as the library's fpd_safetensors_open
    """Open a checkpoint (see Checkpoint)."""
    return Checkpoint(path)


def _tensor_info(name, arr, dtype_name=None):
    t = TensorInfo()
    t.name = name.encode()
    t.dtype = _lib.DTYPE[dtype_name or _FPD_OF[np.dtype(arr.dtype).newbyteorder("=")]]
    if arr.ndim > _lib.MAX_DIMS:
        raise ValueError(f"tensor '{name}' has {arr.ndim} dimensions; at most {_lib.MAX_DIMS}")
    t.ndim = arr.ndim
    for i, n in enumerate(arr.shape):
        t.shape[i] = n
    t.data = arr.ctypes.data if arr.nbytes else None
    t.nbytes = arr.nbytes
    return t


def save(path, tables=None, tensors=None, metadata=None, references=None, core_dtype="F32", overwrite=False,
         free_dtype=None):
    """Write an FPD v1 checkpoint (DESIGN.md section 4) with libfpd's writer
    (fpd_table_meta_to_json, fpd_safetensors_write: atomic, never replacing `path`
    unless overwrite).

    tables: {name: Layer}: cores as "name.fpd.core{m}" (core_dtype F32, F16 or BF16),
      the row permutation as "name.fpd.row_perm" (I32 when the padded row count fits,
      else I64), the metadata "fpd.table.name" from the layer's shape and its .info
      (fit, seed, source_dtype). rel_error is recomputed against references[name] (a
      dense [rows, dim] table) when given, else written as null: a value carried over
      from an earlier file would no longer describe these cores.
    tensors: {name: NumPy array}, written unchanged (dtype and shape kept).
    metadata: extra __metadata__ strings ("fpd.version" is "1").
    free_dtype: None (E of free coordinates in core_dtype, or, for a layer holding E as
      stored rows (Layer.store_free, load_layer(free_stored=True)), in their kind, the
      rows copied), "core" (core_dtype always), "int8"/"int4": E stored
      row-wise quantized (extension free-rowwise/1), or "int8-sym"/"int4-sym": E as
      symmetric codes and an F16 scale a row (extension free-sym/1); written with
      fpd_free_quantize_rows, P stays in core_dtype; rel_error against references is
      then that of the stored table."""
    tables, tensors, references = tables or {}, tensors or {}, references or {}
    if core_dtype not in ("F32", "F16", "BF16"):
        raise ValueError("core_dtype must be F32, F16 or BF16")
    keep_f32 = free_dtype == "core"
    if keep_f32:
        free_dtype = None
    if free_dtype is not None and free_dtype not in _lib.FREE_KINDS:
        raise ValueError(f"free_dtype must be None ('core'), {_free_kinds_text()}, got {free_dtype!r}")
    L = _lib.load()
    infos, keep = [], []
    meta = {"fpd.version": "1"}
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    for name, layer in tables.items():
        # E in free_dtype; without one, a layer holding E as stored rows keeps their kind
        fd = free_dtype if free_dtype is not None or keep_f32 else layer.free_stored
        tm = TableMeta()
        tm.shape = layer._shape
        info = layer.info or {}
        tm.source_dtype = _lib.DTYPE[info.get("source_dtype", "F32")]
        tm.core_dtype = _lib.DTYPE[core_dtype]
        tm.fit = str(info.get("fit", "python")).encode()[:63]
        tm.seed = int(info.get("seed", 0))
        q_free = fd is not None and layer.free_coords > 0
        if q_free and name in references:  # measured as stored
            stored = copy.deepcopy(layer)
            stored.quantize_free(fd)
            tm.rel_error = stored.error(references[name])["rel_error"]
        else:
            tm.rel_error = layer.error(references[name])["rel_error"] if name in references else math.nan
        tm.free_coords = layer.free_coords
        tm.free_rowwise = q_free
        tm.free_kind = _lib.FREE_KINDS[fd] if q_free else 0
        js = ctypes.c_void_p()
        _call("fpd_table_meta_to_json", ctypes.byref(tm), ctypes.byref(js))
        meta[f"fpd.table.{name}"] = ctypes.string_at(js.value).decode()
        L.fpd_free(js)
        for m, c in enumerate(layer.cores):
            if core_dtype == "F32":
                arr = np.ascontiguousarray(c)
            elif core_dtype == "F16":
                arr = c.astype(np.float16)
            else:  # BF16, round to nearest even
                u = c.astype(np.float32).view(np.uint32).astype(np.uint64)
                u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
                arr = u.astype(np.uint16)
            keep.append(arr)
            infos.append(_tensor_info(f"{name}.fpd.core{m}", arr, core_dtype))
        perm = layer.row_perm
        if perm is not None:
            if int(np.prod(layer.row_shape)) <= 2**31 - 1:
                perm = perm.astype(np.int32)
            keep.append(perm)
            infos.append(_tensor_info(f"{name}.fpd.row_perm", perm))
        if layer.free_coords:  # free/1: E and P in the cores' dtype (E quantized with fd)
            held = layer.free_stored
            for suffix, x in (("free", None if held else layer.free_e), ("free_proj", layer.free_p)):
                if suffix == "free" and q_free and held == fd:  # E held in that kind: its rows
                    arr = layer.free_stored_rows.copy()
                    keep.append(arr)
                    infos.append(_tensor_info(f"{name}.fpd.{suffix}", arr))
                    continue
                if suffix == "free" and held:
                    x = layer._free_e_copy()
                if suffix == "free" and q_free:
                    kind, c = _lib.FREE_KINDS[fd], layer.free_coords
                    e = np.ascontiguousarray(x, dtype=np.float32)
                    arr = np.empty((layer.rows, L.fpd_free_row_bytes(kind, c)), np.uint8)
                    bad = L.fpd_free_quantize_rows(kind, _ptr(e, ctypes.c_float), layer.rows, c, arr.ctypes.data)
                    if bad >= 0:
                        raise FPDError(Status.NUMERIC,
                                       f"table '{name}': row {bad} of the free coordinates E cannot be stored as "
                                       f"{fd} (a NaN or Inf, or beyond F16's range)")
                    keep.append(arr)
                    infos.append(_tensor_info(f"{name}.fpd.{suffix}", arr))
                    continue
                if core_dtype == "F32":
                    arr = np.ascontiguousarray(x)
                elif core_dtype == "F16":
                    arr = x.astype(np.float16)
                else:
                    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
                    arr = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
                keep.append(arr)
                infos.append(_tensor_info(f"{name}.fpd.{suffix}", arr, core_dtype))
            ext = [e for e in meta.get("fpd.extensions", "").split(",") if e]
            q_ext = "free-sym/1" if fd and fd.endswith("-sym") else "free-rowwise/1"
            for e in ["free/1"] + ([q_ext] if q_free else []):
                if e not in ext:
                    ext.append(e)
            meta["fpd.extensions"] = ",".join(ext)
    for name, arr in tensors.items():
        arr = np.asarray(arr)
        arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        keep.append(arr)
        infos.append(_tensor_info(name, arr))
    arr_t = (TensorInfo * max(len(infos), 1))(*infos)
    keys = list(meta)
    ck = (ctypes.c_char_p * len(keys))(*[k.encode() for k in keys])
    cv = (ctypes.c_char_p * len(keys))(*[meta[k].encode() for k in keys])
    _call("fpd_safetensors_write", os.fspath(path).encode(), arr_t, len(infos), ck, cv, len(keys),
          _lib.WRITE_OVERWRITE if overwrite else 0)
    del keep


# ------------------------------------------------------------------ the compression pipeline, NCF evaluation


def compress(in_path, out_path, encoding="auto", max_error=None, rank=None, terms=None, k=None, budget=None,
             ratio=None, core_dtype=None, min_rows=None, min_ratio=None, tables=None, row_freq=None, epochs=None,
             als_sweeps=None, seed=0, cluster_rows=False, queries=200, overwrite=False, progress=None,
             free_coords=0, order=None, id_base=0, free_dtype=None):
    """Compress the checkpoint at in_path (safetensors, or one .npy table) into
    out_path (FPD v1 safetensors, written atomically) with libfpd's pipeline
    (fpd_compress_checkpoint), as fpd-compress does with the same options, and return
    its report (schema "fpd-compress/2", README "JSON reports") as a dict; warnings
    are in report["warnings"].

    encoding: "auto" (the smallest of FPD, int4, int8 that meets max_error, else
      dense), "fpd", "int8", "int4" or "dense". max_error: the quality target
      (relative Frobenius error, default 0.1). rank/terms/k/budget (bytes)/ratio fix
      or target the FPD shape (rank, terms, budget or ratio force FPD); min_rows,
      min_ratio: eligibility. core_dtype: "F32", "F16" or "BF16" (default F16 for
      "auto" without rank/terms/budget/ratio, as fpd-compress; else F32). tables: the
      names to compress (each must be a 2-D float tensor). row_freq: a path (the only
      compressed table) or {table: path} of access counts (fpd_row_freq_load).
      epochs, als_sweeps, seed, cluster_rows, free_coords (c free coordinates per row
      of every FPD table, format free/1; "auto": the planner's c per table from its
      data, as fpd-compress --free-coords auto: needs budget, ratio or max_error, which
      then cover cores and free coordinates): the fit (fpd_fit_params). order: the rows of
      trained tables ordered from implicit feedback before the fit (as fpd-compress
      --order-from): a path (the only compressed table, ids in column 1) or {table:
      path or (path, column)} with column 1 or 2; id_base: the files' first id.
      free_dtype: None (E in the core dtype), "int8"/"int4" (E stored row-wise,
      free-rowwise/1) or "int8-sym"/"int4-sym" (symmetric codes and an F16 scale a row,
      free-sym/1); measured as stored; needs free_coords >= 1 or "auto", which then
      sizes E so. queries:
      recall@10 query rows. progress(stage, done, total): called during fits;
      return False to cancel (FPDError CANCELLED, nothing written).

    Raises FPDError: CONFIG when the options do not fit the input (a named table
    missing or not a table, bad row frequencies, a budget no shape meets), IO (an
    existing out_path without overwrite), and the library's other errors."""
    L = _lib.load()
    if encoding not in _lib.COMPRESS_ENCODING:
        raise ValueError(f"encoding must be one of {', '.join(_lib.COMPRESS_ENCODINGS)}, got {encoding!r}")
    forced = bool(rank or terms or budget or ratio)
    if forced and encoding not in ("auto", "fpd"):
        raise ValueError(f"rank/terms/budget/ratio force FPD; they do not go with encoding {encoding!r}")
    if core_dtype is None:
        core_dtype = "F16" if encoding == "auto" and not forced else "F32"
    if core_dtype not in ("F32", "F16", "BF16"):
        raise ValueError("core_dtype must be F32, F16 or BF16")
    target = float(max_error) if max_error else 0.1
    if free_coords == "auto":
        if not (budget or ratio or max_error):
            raise ValueError('free_coords="auto" needs a target to trade the free coordinates against: '
                             'budget, ratio or max_error')
        free_coords = -1  # FPD_FREE_COORDS_AUTO
    # the planner's FPD target only for an explicit "fpd" without rank/terms (auto passes it itself)
    pp, _ = _plan_params(rank, terms, k, budget, ratio, target if encoding == "fpd" and not (rank or terms) else None,
                         min_rows, min_ratio, core_dtype)
    cp = L.fpd_compress_default_params()
    cp.encoding = _lib.COMPRESS_ENCODING[encoding]
    cp.max_error = target
    cp.plan = ctypes.pointer(pp)
    if epochs is not None:
        cp.fit.finetune_epochs = int(epochs)
    if als_sweeps is not None:
        cp.fit.als_sweeps = int(als_sweeps)
    cp.fit.seed, cp.fit.cluster_rows, cp.fit.free_coords = int(seed), bool(cluster_rows), int(free_coords)
    cp.recall_queries = int(queries)
    cp.overwrite = bool(overwrite)
    if free_dtype == "core":
        free_dtype = None
    if free_dtype is not None:
        if free_dtype not in _lib.FREE_KINDS:
            raise ValueError(f"free_dtype must be None ('core'), {_free_kinds_text()}, got {free_dtype!r}")
        if not (isinstance(free_coords, int) and (free_coords >= 1 or free_coords == -1)):
            raise ValueError("free_dtype stores the free coordinates' E: give free_coords >= 1 or 'auto'")
        cp.free_rowwise, cp.free_kind = True, _lib.FREE_KINDS[free_dtype]
    keep = []
    if tables is not None:
        names = [tables] if isinstance(tables, str) else list(tables)
        arr = (ctypes.c_char_p * max(len(names), 1))(*[str(n).encode() for n in names])
        keep.append(arr)
        cp.tables, cp.n_tables = ctypes.cast(arr, ctypes.POINTER(ctypes.c_char_p)), len(names)
    if row_freq is not None:
        pairs = [(None, row_freq)] if isinstance(row_freq, (str, bytes, os.PathLike)) else list(row_freq.items())
        rt = (ctypes.c_char_p * len(pairs))(*[None if t is None else str(t).encode() for t, _ in pairs])
        rf = (ctypes.c_char_p * len(pairs))(*[os.fsencode(f) for _, f in pairs])
        keep += [rt, rf]
        cp.row_freq_tables = ctypes.cast(rt, ctypes.POINTER(ctypes.c_char_p))
        cp.row_freq_files = ctypes.cast(rf, ctypes.POINTER(ctypes.c_char_p))
        cp.n_row_freq = len(pairs)
    if order is not None:
        items = [(None, order)] if isinstance(order, (str, bytes, os.PathLike)) else list(order.items())
        spec = [(t, v if isinstance(v, tuple) else (v, 1)) for t, v in items]
        for t, (_, col) in spec:
            if col not in (1, 2):
                raise ValueError(f"order: the column of {t or 'the table'} must be 1 or 2, got {col!r}")
        ot = (ctypes.c_char_p * len(spec))(*[None if t is None else str(t).encode() for t, _ in spec])
        of = (ctypes.c_char_p * len(spec))(*[os.fsencode(f) for _, (f, _) in spec])
        oc = (ctypes.c_int32 * len(spec))(*[col - 1 for _, (_, col) in spec])
        keep += [ot, of, oc]
        cp.order_tables = ctypes.cast(ot, ctypes.POINTER(ctypes.c_char_p))
        cp.order_files = ctypes.cast(of, ctypes.POINTER(ctypes.c_char_p))
        cp.order_columns = ctypes.cast(oc, ctypes.POINTER(ctypes.c_int32))
        cp.n_order, cp.init_id_base = len(spec), int(id_base)
    if progress is not None:
        def _progress(stage, done, total, ud):
            r = progress(stage.decode("utf-8", "replace"), done, total)
            return r is None or bool(r)
        cb = _lib.PROGRESS_CB(_progress)
        keep.append(cb)
        cp.progress = ctypes.cast(cb, ctypes.c_void_p)
    text = ctypes.c_void_p()
    _call("fpd_compress_checkpoint", os.fsencode(in_path), os.fsencode(out_path), ctypes.byref(cp),
          ctypes.byref(text))
    del keep
    try:
        return json.loads(ctypes.string_at(text.value).decode())
    finally:
        L.fpd_free(text)


def ncf_eval(ckpt, rating, negative):
    """HR@10 and NDCG@10 of a GMF checkpoint (dense, row-wise or FPD tables) on the
    NCF leave-one-out test files (He et al., WWW 2017), as fpd-eval computes them
    (fpd_ncf_eval_file): dict hr10, ndcg10, users. rating: "user\\titem..." lines;
    negative: "(user,item)\\tneg1..." lines (0-based ids). Raises FPDError (IO,
    FORMAT naming file and line, INVALID_ARG for an id outside the tables)."""
    m = NcfMetrics()
    _call("fpd_ncf_eval_file", os.fsencode(ckpt), os.fsencode(rating), os.fsencode(negative), ctypes.byref(m))
    return {"hr10": m.hr10, "ndcg10": m.ndcg10, "users": m.users}
