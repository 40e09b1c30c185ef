"""FPD embedding tables in PyTorch (and NumPy): load a table that libfpd compressed
(an FPD v1 safetensors checkpoint, DESIGN.md sections 2 and 4) and use it as a
drop-in for torch.nn.EmbeddingBag / torch.nn.Embedding, for users who finetune end to
end in PyTorch, then save the cores back in the same format.

    from fpd_embedding import FPDEmbeddingBag, save_fpd
    bag = FPDEmbeddingBag.from_file("model.fpd.safetensors", "user_embedding.weight", mode="mean")
    out = bag(input, offsets)                     # as nn.EmbeddingBag: [bags, dim]
    out = bag(input, offsets, per_sample_weights=w)   # mode="sum" only, as in torch
    ... train: the cores are nn.Parameters ...
    save_fpd("finetuned.fpd.safetensors", {"user_embedding.weight": bag})

The FPD layer (normative definition, DESIGN.md section 2): a table W [N, D] is p terms
of k cores G_m with shape [p, n_m, r_m, d_m, r_{m+1}] (C order, r_0 = r_k = 1); row i
has digits i_m = (i // prod_{l>m} n_l) % n_m (first core most significant), column
j = sum_m j_m prod_{l>m} d_l, and

    W[i, j] = sum_t G_0[t, i_0, 0, j_0, :] @ G_1[t, i_1, :, j_1, :] @ ... @ G_{k-1}[t, i_{k-1}, :, j_{k-1}, 0]

An optional row permutation "T.fpd.row_perm" stores original row i at FPD row
row_perm[i]. The checkpoint's metadata "fpd.table.T" (a JSON string) gives rows, dim,
row_shape, col_shape, ranks, terms, source_dtype.

Free coordinates (extension free/1, key "free_coords": c): row i is FPD(i) + E[i] P
with E "T.fpd.free" [N, c] (original row order) and P "T.fpd.free_proj" [c, D]. With
free-rowwise/1 (key "free_dtype": "int8" | "int4") E is stored as FBGEMM's fused
row-wise rows (U8 [N, B]; int8: c codes then scale and bias as F32, B = c + 8; int4:
ceil(c/2) bytes of 4-bit codes, column j in byte j // 2, even j in the low nibble,
then scale and bias as F16, B = ceil(c/2) + 4; value = code * scale + bias), decoded
here to float32. With free-sym/1 (key "free_dtype": "int8-sym" | "int4-sym") E is
stored as symmetric codes q and one scale a row, E[i, j] = q * scale_i (U8 [N, B];
int8-sym: c bytes q + 128, q in [-127, 127], B = c + 2; int4-sym: ceil(c/2) bytes,
column j in byte j // 2, even j in the low nibble, nibble = q + 8, q in [-7, 7],
B = ceil(c/2) + 2; then the scale as F16 little-endian), also decoded to float32. A
checkpoint naming an extension this file does not know is refused.

Needs numpy; reading uses the `safetensors` package when installed (else a small
reader here); the torch module needs torch. Everything but FPDEmbeddingBag works
without torch (reconstruct_rows, embedding_bag_numpy).
"""
import json
import struct

import numpy as np

__all__ = ["FPDTable", "load_fpd_tables", "load_fpd_table", "reconstruct_rows", "embedding_bag_numpy",
           "FPDEmbeddingBag", "save_fpd"]

_NP_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I32": np.int32, "I64": np.int64,
              "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def _read_safetensors(path):
    """(tensors as NumPy arrays, metadata dict). BF16 is widened to float32 exactly."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", None) or {}
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        raw = np.frombuffer(data[b:e], dtype=np.uint8)
        if t["dtype"] == "BF16":
            a = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            a = raw.view(np.dtype(_NP_DTYPES[t["dtype"]]).newbyteorder("<"))
        out[name] = a.reshape(t["shape"])
    return out, meta


def _load(path):
    try:
        from safetensors import safe_open
    except ImportError:
        return _read_safetensors(path)
    try:
        with safe_open(path, framework="np") as f:
            meta = f.metadata() or {}
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    except (TypeError, ValueError):  # BF16 has no NumPy dtype: use the reader here
        return _read_safetensors(path)


_KNOWN_EXTENSIONS = {"rowwise/1", "free/1", "free-rowwise/1", "free-sym/1"}
_FREE_ROWWISE, _FREE_SYM = ("int8", "int4"), ("int8-sym", "int4-sym")


def _nibbles(packed, n):
    """4-bit codes of packed bytes (even column in the low nibble) -> float32 [N, n]."""
    codes = np.empty((packed.shape[0], 2 * packed.shape[1]), dtype=np.float32)
    codes[:, 0::2] = packed & 0x0F
    codes[:, 1::2] = packed >> 4
    return codes[:, :n]


def decode_rowwise(q, kind, dim):
    """FBGEMM fused row-wise rows q (uint8 [N, B]) of dim columns -> float32 [N, dim]
    (kind "int8" or "int4"; value = code * scale + bias)."""
    q = np.asarray(q, dtype=np.uint8)
    if kind == "int8":
        codes = q[:, :dim].astype(np.float32)
        sb = np.ascontiguousarray(q[:, dim:dim + 8]).view("<f4").astype(np.float32)
    elif kind == "int4":
        nb = (dim + 1) // 2
        codes = _nibbles(q[:, :nb], dim)
        sb = np.ascontiguousarray(q[:, nb:nb + 4]).view("<f2").astype(np.float32)
    else:
        raise ValueError(f"unknown row-wise kind {kind!r}")
    return (codes * sb[:, :1] + sb[:, 1:2]).astype(np.float32)


def decode_free_sym(q, kind, c, where=""):
    """Symmetric rows q (uint8 [N, B], free-sym/1) of c columns -> float32 [N, c]
    (kind "int8-sym" or "int4-sym"; value = code * scale, the scale F16 after the codes;
    a scale that is negative, NaN or Inf is refused, naming `where` and the row)."""
    q = np.asarray(q, dtype=np.uint8)
    if kind == "int8-sym":
        nb = c
        codes = q[:, :c].astype(np.float32) - 128
    elif kind == "int4-sym":
        nb = (c + 1) // 2
        codes = _nibbles(q[:, :nb], c) - 8
    else:
        raise ValueError(f"unknown symmetric kind {kind!r}")
    scale = np.ascontiguousarray(q[:, nb:nb + 2]).view("<f2").astype(np.float32)
    bad = np.flatnonzero(~(np.isfinite(scale[:, 0]) & (scale[:, 0] >= 0)))
    if bad.size:
        raise ValueError(f"{where}row {int(bad[0])} ({kind}) has a scale that is negative, NaN or Inf "
                         f"({float(scale[bad[0], 0])})")
    return (codes * scale).astype(np.float32)


class FPDTable:
    """One FPD table: cores (NumPy, float32), shapes, ranks, optional row_perm, and
    optional free coordinates free_e [rows, c] and free_p [c, dim] (float32)."""

    def __init__(self, name, cores, rows, dim, row_shape, col_shape, ranks, row_perm=None, meta=None,
                 free_e=None, free_p=None):
        self.name, self.rows, self.dim = name, int(rows), int(dim)
        self.cores = [np.ascontiguousarray(c, dtype=np.float32) for c in cores]
        self.row_shape, self.col_shape = [int(x) for x in row_shape], [int(x) for x in col_shape]
        self.ranks = [int(x) for x in ranks]
        self.terms = self.cores[0].shape[0]
        self.row_perm = None if row_perm is None else np.asarray(row_perm, dtype=np.int64)
        self.meta = meta or {}
        self.free_e = None if free_e is None else np.ascontiguousarray(free_e, dtype=np.float32)
        self.free_p = None if free_p is None else np.ascontiguousarray(free_p, dtype=np.float32)
        if (self.free_e is None) != (self.free_p is None):
            raise ValueError(f"{name}: free coordinates need both E and P")
        if self.free_e is not None:
            c = self.free_e.shape[1] if self.free_e.ndim == 2 else -1
            if self.free_e.shape != (self.rows, c) or self.free_p.shape != (c, self.dim):
                raise ValueError(f"{name}: free coordinates E {self.free_e.shape}, P {self.free_p.shape} do not fit "
                                 f"[{rows}, {dim}]")
        k = len(self.cores)
        for m, c in enumerate(self.cores):
            want = (self.terms, self.row_shape[m], self.ranks[m], self.col_shape[m], self.ranks[m + 1])
            if tuple(c.shape) != want:
                raise ValueError(f"{name}: core {m} has shape {tuple(c.shape)}, expected {want}")
        if int(np.prod(self.row_shape)) < self.rows or int(np.prod(self.col_shape)) != self.dim or len(self.ranks) != k + 1:
            raise ValueError(f"{name}: row/column shapes do not cover [{rows}, {dim}]")


def load_fpd_tables(path):
    """Every FPD table of a checkpoint: {name: FPDTable}."""
    tensors, meta = _load(path)
    ext = [e for e in meta.get("fpd.extensions", "").split(",") if e]
    unknown = [e for e in ext if e not in _KNOWN_EXTENSIONS]
    if unknown:
        raise ValueError(f"{path}: fpd.extensions names {', '.join(unknown)}, which this reader does not know; "
                         "refusing rather than reading its tables wrongly")
    tables = {}
    for key, value in meta.items():
        if not key.startswith("fpd.table."):
            continue
        name = key[len("fpd.table."):]
        info = json.loads(value)
        k = len(info["row_shape"])
        cores = [np.asarray(tensors[f"{name}.fpd.core{m}"], dtype=np.float32) for m in range(k)]
        free_e = free_p = None
        c = int(info.get("free_coords") or 0)
        if c:
            if "free/1" not in ext:
                raise ValueError(f"{path}: table '{name}' has free_coords but fpd.extensions does not list free/1")
            free_e, free_p = tensors[f"{name}.fpd.free"], np.asarray(tensors[f"{name}.fpd.free_proj"], np.float32)
            kind = info.get("free_dtype")
            if kind is not None:
                if kind not in _FREE_ROWWISE + _FREE_SYM:
                    raise ValueError(f"{path}: table '{name}' has free_dtype {kind!r}; int8, int4 (free-rowwise/1), "
                                     "int8-sym or int4-sym (free-sym/1) expected")
                need = "free-sym/1" if kind in _FREE_SYM else "free-rowwise/1"
                if need not in ext:
                    raise ValueError(f"{path}: table '{name}' has free_dtype {kind} but fpd.extensions does not list "
                                     f"{need}")
                want = (int(info["rows"]), {"int8": c + 8, "int4": (c + 1) // 2 + 4, "int8-sym": c + 2,
                                            "int4-sym": (c + 1) // 2 + 2}[kind])
                if free_e.dtype != np.uint8 or tuple(free_e.shape) != want:
                    raise ValueError(f"{path}: table '{name}': '{name}.fpd.free' is {free_e.dtype} "
                                     f"{list(free_e.shape)}; free_dtype {kind} needs uint8 {list(want)}")
                free_e = (decode_free_sym(free_e, kind, c, f"{path}: table '{name}': '{name}.fpd.free': ")
                          if kind in _FREE_SYM else decode_rowwise(free_e, kind, c))
            elif free_e.dtype.kind != "f":  # E in the cores' dtype (free/1 alone)
                raise ValueError(f"{path}: table '{name}': '{name}.fpd.free' is {free_e.dtype} "
                                 f"{list(free_e.shape)} but the table has no free_dtype; a float [rows, c] expected "
                                 "(quantized E needs free_dtype)")
        elif "free_dtype" in info:
            raise ValueError(f"{path}: table '{name}' has free_dtype without free_coords")
        tables[name] = FPDTable(name, cores, info["rows"], info["dim"], info["row_shape"], info["col_shape"],
                                info["ranks"], tensors.get(f"{name}.fpd.row_perm"), info, free_e, free_p)
    return tables


def load_fpd_table(path, name=None):
    """One FPD table by name (or the only one)."""
    tables = load_fpd_tables(path)
    if name is None:
        if len(tables) != 1:
            raise KeyError(f"{path} holds {len(tables)} FPD tables ({', '.join(sorted(tables))}); name one")
        return next(iter(tables.values()))
    if name not in tables:
        raise KeyError(f"{path} has no FPD table '{name}' (it has: {', '.join(sorted(tables)) or 'none'})")
    return tables[name]


def _digits(idx, row_shape):
    rem = np.array(idx, dtype=np.int64, copy=True)
    out = []
    for n in reversed(row_shape):
        out.append(rem % n)
        rem //= n
    return out[::-1]


def reconstruct_rows(table, idx, dtype=np.float64):
    """Rows idx (original row numbers) of the table, [len(idx), dim], by the definition."""
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= table.rows):
        raise IndexError(f"{table.name}: row index out of range [0, {table.rows})")
    stored = table.row_perm[idx] if table.row_perm is not None else idx
    dig = _digits(stored, table.row_shape)
    B = idx.size
    out = np.zeros((B, table.dim), dtype=dtype)
    for t in range(table.terms):
        acc = table.cores[0][t][dig[0]].astype(dtype)                   # [B, 1, d0, r1]
        acc = acc.reshape(B, table.col_shape[0], -1)                      # [B, d0, r1]
        for m in range(1, len(table.cores)):
            g = table.cores[m][t][dig[m]].astype(dtype)                   # [B, r, d, r']
            acc = np.einsum("bjr,brds->bjds", acc, g).reshape(B, -1, g.shape[-1])
        out += acc.reshape(B, table.dim)
    if table.free_e is not None:  # free/1: + E[i] P
        out += table.free_e[idx].astype(dtype) @ table.free_p.astype(dtype)
    return out


def _bags(n_idx, offsets, include_last_offset):
    offsets = np.asarray(offsets, dtype=np.int64)
    ends = offsets[1:] if include_last_offset else np.append(offsets[1:], n_idx)
    starts = offsets[:-1] if include_last_offset else offsets
    return starts, ends


def embedding_bag_numpy(table, input, offsets=None, mode="mean", per_sample_weights=None,
                        include_last_offset=False):
    """nn.EmbeddingBag's forward in NumPy (float64): input 1-D with offsets, or 2-D
    [bags, L] without; mode "sum" or "mean" (empty bags give zeros); per_sample_weights
    with mode "sum" only."""
    input = np.asarray(input, dtype=np.int64)
    if input.ndim == 2:
        if offsets is not None:
            raise ValueError("offsets must be None when input is 2-D")
        B, L = input.shape
        offsets = np.arange(B, dtype=np.int64) * L
        input = input.reshape(-1)
        if per_sample_weights is not None:
            per_sample_weights = np.asarray(per_sample_weights).reshape(-1)
    if mode not in ("sum", "mean"):
        raise ValueError("mode must be 'sum' or 'mean'")
    if per_sample_weights is not None and mode != "sum":
        raise ValueError("per_sample_weights is only supported with mode='sum' (as torch.nn.EmbeddingBag)")
    rows = reconstruct_rows(table, input)
    if per_sample_weights is not None:
        rows = rows * np.asarray(per_sample_weights, dtype=np.float64)[:, None]
    starts, ends = _bags(input.size, offsets, include_last_offset)
    out = np.zeros((len(starts), table.dim))
    for b, (s, e) in enumerate(zip(starts, ends)):
        if e > s:
            out[b] = rows[s:e].sum(0) / (e - s if mode == "mean" else 1)
    return out


try:
    import torch
    from torch import nn
except ImportError:  # NumPy-only use
    torch = None
    nn = None

if torch is not None:

    class FPDEmbeddingBag(nn.Module):
        """torch.nn.EmbeddingBag over an FPD table; the cores are trainable parameters
        (core0 .. core{k-1}, each [p, n_m, r_m, d_m, r_{m+1}]). forward(input, offsets=None,
        per_sample_weights=None) as nn.EmbeddingBag (mode "sum" or "mean", input 1-D with
        offsets or 2-D); lookup(idx) gives plain rows (nn.Embedding)."""

        def __init__(self, table, mode="mean", include_last_offset=False, dtype=None):
            super().__init__()
            if mode not in ("sum", "mean"):
                raise ValueError("mode must be 'sum' or 'mean'")
            self.name, self.num_embeddings, self.embedding_dim = table.name, table.rows, table.dim
            self.mode, self.include_last_offset = mode, include_last_offset
            self.row_shape, self.col_shape, self.ranks = list(table.row_shape), list(table.col_shape), list(table.ranks)
            self.meta = dict(table.meta)
            dtype = dtype or torch.float32
            self.cores = nn.ParameterList([nn.Parameter(torch.tensor(c, dtype=dtype)) for c in table.cores])
            perm = table.row_perm if table.row_perm is not None else None
            self.register_buffer("row_perm", None if perm is None else torch.tensor(perm, dtype=torch.long))
            div = [int(np.prod(self.row_shape[m + 1:])) for m in range(len(self.row_shape))]
            self.register_buffer("divisors", torch.tensor(div, dtype=torch.long))
            # free coordinates (free/1; E decoded to float when stored row-wise): trainable
            has_free = table.free_e is not None
            self.free = nn.Parameter(torch.tensor(table.free_e, dtype=dtype)) if has_free else None
            self.free_proj = nn.Parameter(torch.tensor(table.free_p, dtype=dtype)) if has_free else None

        @classmethod
        def from_file(cls, path, name=None, **kwargs):
            return cls(load_fpd_table(path, name), **kwargs)

        def lookup(self, idx):
            """Rows idx -> [*idx.shape, dim], differentiable with respect to the cores."""
            shape = idx.shape
            idx = idx.reshape(-1).long()
            orig = idx
            if self.row_perm is not None:
                idx = self.row_perm[idx]
            B = idx.numel()
            out = None
            for t in range(self.cores[0].shape[0]):
                acc = None
                for m, core in enumerate(self.cores):
                    d = (idx // self.divisors[m]) % self.row_shape[m]
                    g = core[t][d]                                             # [B, r, d_m, r']
                    if acc is None:
                        acc = g.reshape(B, self.col_shape[0], -1)              # r_0 = 1
                    else:
                        acc = torch.einsum("bjr,brds->bjds", acc, g).reshape(B, -1, g.shape[-1])
                term = acc.reshape(B, self.embedding_dim)
                out = term if out is None else out + term
            if self.free is not None:  # free/1: E indexed by the original id
                out = out + self.free[orig] @ self.free_proj
            return out.reshape(*shape, self.embedding_dim)

        def forward(self, input, offsets=None, per_sample_weights=None):
            if input.dim() == 2:
                if offsets is not None:
                    raise ValueError("offsets must be None when input is 2-D")
                B, L = input.shape
                offsets = torch.arange(B, device=input.device) * L
                input = input.reshape(-1)
                if per_sample_weights is not None:
                    per_sample_weights = per_sample_weights.reshape(-1)
            elif offsets is None:
                raise ValueError("offsets is required when input is 1-D")
            if per_sample_weights is not None and self.mode != "sum":
                raise ValueError("per_sample_weights is only supported with mode='sum' (as torch.nn.EmbeddingBag)")
            offsets = offsets.long()
            n = input.numel()
            rows = self.lookup(input) if n else self.cores[0].new_zeros((0, self.embedding_dim))
            if per_sample_weights is not None:
                rows = rows * per_sample_weights.reshape(-1, 1).to(rows.dtype)
            if self.include_last_offset:
                starts, ends = offsets[:-1], offsets[1:]
            else:
                starts, ends = offsets, torch.cat([offsets[1:], offsets.new_tensor([n])])
            nb = starts.numel()
            counts = (ends - starts).clamp(min=0)
            bag = torch.repeat_interleave(torch.arange(nb, device=input.device), counts)
            out = rows.new_zeros((nb, self.embedding_dim)).index_add(0, bag, rows[: bag.numel()])
            if self.mode == "mean":
                out = out / counts.clamp(min=1).to(out.dtype).unsqueeze(1)
            return out

else:

    class FPDEmbeddingBag:  # pragma: no cover - a clear message instead of a NameError
        def __init__(self, *args, **kwargs):
            raise ImportError("FPDEmbeddingBag needs torch (pip install torch); the NumPy functions work without it")

        @classmethod
        def from_file(cls, *args, **kwargs):
            return cls()


def save_fpd(path, modules, metadata=None):
    """Write FPD tables {name: FPDEmbeddingBag or FPDTable} as an FPD v1 checkpoint
    (F32 cores; the table metadata of the source, with core_dtype F32 and fit
    "+pytorch"; free coordinates as free/1 with E and P in F32: a table read with
    int4/int8 (or int4-sym/int8-sym) E is written with its decoded (then trained) E
    in F32, free_dtype dropped), with safetensors' own writer. Other tensors: add them
    to `metadata`-free files yourself, or pass them as plain arrays in `modules`
    (written unchanged)."""
    from safetensors.numpy import save_file
    tensors, meta = {}, {"fpd.version": "1"}
    meta.update(metadata or {})
    for name, mod in modules.items():
        if isinstance(mod, np.ndarray):
            tensors[name] = np.ascontiguousarray(mod)
            continue
        cores = [c.detach().cpu().float().numpy() if torch is not None and isinstance(c, torch.Tensor) else np.asarray(c, np.float32)
                 for c in mod.cores]
        info = dict(mod.meta) if getattr(mod, "meta", None) else {}
        rows = getattr(mod, "num_embeddings", getattr(mod, "rows", None))
        dim = getattr(mod, "embedding_dim", getattr(mod, "dim", None))
        info.update({"rows": int(rows), "dim": int(dim), "row_shape": list(mod.row_shape), "col_shape": list(mod.col_shape),
                     "ranks": list(mod.ranks), "terms": int(cores[0].shape[0]), "core_dtype": "F32"})
        info.setdefault("source_dtype", "F32")
        info["fit"] = (info.get("fit") or "import") + ("+pytorch" if "+pytorch" not in (info.get("fit") or "") else "")
        info.pop("free_dtype", None)
        info.pop("free_coords", None)
        fe = getattr(mod, "free", getattr(mod, "free_e", None))
        fp = getattr(mod, "free_proj", getattr(mod, "free_p", None))
        if fe is not None:
            fe, fp = [x.detach().cpu().float().numpy() if torch is not None and isinstance(x, torch.Tensor)
                      else np.asarray(x, np.float32) for x in (fe, fp)]
            info["free_coords"] = int(fe.shape[1])
            tensors[f"{name}.fpd.free"] = np.ascontiguousarray(fe)
            tensors[f"{name}.fpd.free_proj"] = np.ascontiguousarray(fp)
            ext = [e for e in meta.get("fpd.extensions", "").split(",") if e]
            meta["fpd.extensions"] = ",".join(ext + ([] if "free/1" in ext else ["free/1"]))
        info.setdefault("seed", 0)
        info.setdefault("rel_error", None)
        for m, c in enumerate(cores):
            tensors[f"{name}.fpd.core{m}"] = np.ascontiguousarray(c)
        perm = getattr(mod, "row_perm", None)
        if perm is not None:
            tensors[f"{name}.fpd.row_perm"] = np.asarray(perm.cpu().numpy() if torch is not None and isinstance(perm, torch.Tensor) else perm, dtype=np.int64)
        meta[f"fpd.table.{name}"] = json.dumps(info, separators=(",", ":"))
    save_file(tensors, path, metadata=meta)
