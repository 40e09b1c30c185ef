"""FPD embedding modules for PyTorch over libfpd's engine (ctypes; no build against
PyTorch).

    import torch, fpd.torch as ft
    bag = ft.FPDEmbeddingBag(10**6, 64, mode="sum", rank=16)          # random init, like nn.EmbeddingBag
    bag = ft.FPDEmbeddingBag.from_pretrained(weight, rank=16, freeze=False)   # libfpd's fit
    bag = ft.FPDEmbeddingBag.from_file("model.fpd.safetensors", "user_embedding.weight")
    out = bag(ids, offsets)                                 # as nn.EmbeddingBag
    emb = ft.FPDEmbedding(10**6, 64)                        # as nn.Embedding
    bag.save("out.fpd.safetensors", "user_embedding.weight", reference=weight)
    report = ft.replace_embeddings(model, budget=4 << 20)  # swap a model's large tables

Forward and backward run in libfpd (fpd_engine_forward / fpd_engine_backward, through
a torch.autograd.Function); the cores are nn.Parameters (`cores.0` .. `cores.{k-1}`,
each [p, n_m, r_m, d_m, r_{m+1}]) whose .grad the backward fills from fpd_engine_grad,
so any torch optimizer trains them. A layer with free coordinates (format extension
free/1: row i = FPD(i) + E[i] P) adds the parameters `free` (E [rows, c]; a sparse
gradient over the looked-up rows when sparse=True) and `free_proj` (P [c, dim], dense),
also sharing the layer's memory; without them both are None. from_file(...,
free_stored=True) makes a frozen inference module whose E stays the file's int8/int4
rows (the buffer `free_rows`; `free` is None).

Where the cores live: each parameter's storage IS the fpd_layer's core memory (a
tensor made with torch.from_numpy over the library's buffer; no copy), so the
optimizer's in-place updates are what the engine reads at the next forward, and a
forward copies nothing. This was chosen over copying the parameters into the layer
before each forward because the copy costs a pass over all cores per batch (about
1/3 of a small batch's forward time) and keeps two copies that can disagree.
Anything that replaces a parameter's storage (module.double(), param.data = ...,
load_state_dict(..., assign=True), copy.deepcopy, unpickling) breaks the sharing; the
module notices (the data pointer differs from the layer's) and then copies the
parameter into the layer before each forward, so results stay right, only slower.
CUDA tensors raise a RuntimeError: the modules run libfpd's CPU engine (its CUDA engine's
public API takes host arrays; the modules do not hand it device tensors yet).
"""
import numpy as np
import torch
from torch import nn

import fpd as _fpd

__all__ = ["FPDEmbeddingBag", "FPDEmbedding", "replace_embeddings", "save"]

_CUDA_MSG = ("{}: CUDA tensors are not supported: the module runs libfpd's CPU engine (its CUDA engine's API "
             "takes host arrays; the module does not hand it device tensors yet); keep the module and its inputs "
             "on the CPU")


def _np_i64(t):
    """A CPU int64 contiguous tensor's NumPy view (a copy only when needed)."""
    return t.detach().to(torch.int64).contiguous().numpy()


class _FPDFunction(torch.autograd.Function):
    """out = the engine's forward of `batch`; backward through fpd_engine_backward."""

    @staticmethod
    def forward(ctx, mod, batch, psw, *cores):
        # cores: the k cores, then (with free coordinates) E and P
        eng = mod._engine
        out = eng._forward(batch)
        ctx.mod, ctx.batch = mod, batch
        ctx.save_for_backward(psw, *cores)  # in-place changes before backward are caught
        res = torch.from_numpy(out)
        return res if cores[0].dtype == torch.float32 else res.to(cores[0].dtype)

    @staticmethod
    def backward(ctx, grad_out):
        saved = ctx.saved_tensors  # checks the version counters
        psw, cores = saved[0], saved[1:]
        mod, batch = ctx.mod, ctx.batch
        eng = mod._engine
        g = grad_out.detach().to(torch.float32).contiguous().numpy()
        grads = [None] * len(cores)
        if any(ctx.needs_input_grad[3:]):
            if mod._free_kind:
                raise RuntimeError(_stored_msg(mod, "cannot train"))
            eng.zero_grad()
            eng._backward(batch, g)
            for m, c in enumerate(cores):
                if not ctx.needs_input_grad[3 + m]:
                    continue
                if mod.sparse and m == mod._layer.k:  # E: rows touched
                    dense, sl = eng.grad(m, copy=False)
                    vals = torch.from_numpy(dense[sl].copy())
                    grads[m] = torch.sparse_coo_tensor(torch.from_numpy(sl).reshape(1, -1), vals, c.shape,
                                                       dtype=c.dtype)
                elif mod.sparse and m < mod._layer.k:
                    dense, sl = eng.grad(m, copy=False)
                    n = dense.shape[1]
                    sl_t = torch.from_numpy(sl)
                    vals = torch.from_numpy(dense.reshape((-1,) + dense.shape[2:])[sl].copy())
                    grads[m] = torch.sparse_coo_tensor(torch.stack([sl_t // n, sl_t % n]), vals, c.shape,
                                                       dtype=c.dtype)
                else:
                    grads[m] = torch.from_numpy(eng.grad(m)[0]).to(c.dtype)
            eng.zero_grad()
        gw = None
        if ctx.needs_input_grad[2]:
            # d out[bag] / d w_i = row_i: the rows of the entries (padding entries give 0)
            flat = batch[1][0]
            rows = mod._engine.forward(flat, mode="none", padding_idx=mod._padding_idx_or_none())
            g2 = g.reshape(-1, rows.shape[1])
            bag = mod._bag_of_entries(batch)
            gw = np.zeros(bag.size, np.float32)
            inbag = bag >= 0
            gw[inbag] = np.einsum("ij,ij->i", rows[inbag], g2[bag[inbag]])
            gw = torch.from_numpy(gw)
            gw = gw.to(psw.dtype).reshape(psw.shape)
        return (None, None, gw) + tuple(grads)


def _stored_msg(mod, what):
    return (f"{type(mod).__name__}: {what}: it holds E of its free coordinates as stored {mod._free_kind} rows, "
            "for inference (from_file(..., free_stored=True)); to train, load it without free_stored=True")


class _FPDModule(nn.Module):
    """What FPDEmbeddingBag and FPDEmbedding share: the layer, its engine, the core
    parameters and their sharing with the layer, files."""

    def _setup(self, layer, padding_idx, sparse, threads, freeze=False):
        if not isinstance(layer, _fpd.Layer):
            raise TypeError("layer must be an fpd.Layer")
        if layer.free_stored and not freeze:
            raise ValueError(f"{type(self).__name__}: this layer holds E of its free coordinates as stored "
                             f"{layer.free_stored} rows (look-ups only): freeze it for inference (freeze=True); to "
                             "train E as a float32 parameter, load it without free_stored=True (from_file) or call "
                             "layer.expand_free() before making the module")
        self.num_embeddings, self.embedding_dim = layer.rows, layer.dim
        if padding_idx is not None:
            if padding_idx >= 0:
                assert padding_idx < self.num_embeddings, "Padding_idx must be within num_embeddings"
            else:
                assert padding_idx >= -self.num_embeddings, "Padding_idx must be within num_embeddings"
                padding_idx = self.num_embeddings + padding_idx
        self.padding_idx = padding_idx
        self.sparse = bool(sparse)
        self.threads = torch.get_num_threads() if threads is None else int(threads)
        self._layer = layer
        self.free_qat = None
        self._engine = _fpd.Engine(layer, threads=self.threads)
        self._views = [torch.from_numpy(c) for c in layer.cores]  # the layer's memory
        self.cores = nn.ParameterList([nn.Parameter(v, requires_grad=not freeze) for v in self._views])
        # free coordinates (format extension free/1): E [rows, c] and P [c, dim], also
        # sharing the layer's memory; None without them. E held as stored rows (inference):
        # `free` is None and the buffer `free_rows` (uint8, the file's rows) is the layer's
        self._free_kind = layer.free_stored
        self.register_buffer("free_rows", None)
        if self._free_kind:
            self._fviews = [torch.from_numpy(layer.free_p)]
            self.register_parameter("free", None)
            self.register_parameter("free_proj", nn.Parameter(self._fviews[0], requires_grad=False))
            self._bind_free_rows()
        else:
            self._fviews = [torch.from_numpy(layer.free_e), torch.from_numpy(layer.free_p)] if layer.free_coords else []
            for nm, v in zip(("free", "free_proj"), self._fviews or [None, None]):
                self.register_parameter(nm, None if v is None else nn.Parameter(v, requires_grad=not freeze))
        perm = layer.row_perm
        self.register_buffer("row_perm", None if perm is None else torch.from_numpy(perm))
        self._perm_seen = None if perm is None else (self.row_perm.data_ptr(), self.row_perm._version)

    # -- pickling (torch.save(module), copy.deepcopy): the engine is rebuilt, and the
    # unpickled parameters share the rebuilt layer's memory again
    def __getstate__(self):
        self._sync()
        st = self.__dict__.copy()
        st.pop("_engine", None)
        st.pop("_views", None)
        st.pop("_fviews", None)
        return st

    def __setstate__(self, st):
        super().__setstate__(st)
        self._free_kind = getattr(self, "_free_kind", None)
        self._engine = _fpd.Engine(self._layer, threads=self.threads, free_qat=getattr(self, "free_qat", None))
        self._views = [torch.from_numpy(c) for c in self._layer.cores]
        fc = self._layer.free_coords
        if self._free_kind:  # the layer unpickled its own rows: the buffer views them again
            self._fviews = [torch.from_numpy(self._layer.free_p)]
            self._bind_free_rows()
        else:
            self._fviews = [torch.from_numpy(self._layer.free_e), torch.from_numpy(self._layer.free_p)] if fc else []
        with torch.no_grad():
            for p, v in zip(self._params(), self._views + self._fviews):
                if p.device.type == "cpu" and p.shape == v.shape:
                    v.copy_(p)
                    p.data = v

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a table with a row permutation loads into a module that had none
        key = prefix + "row_perm"
        if self.row_perm is None and key in state_dict:
            self.row_perm = torch.zeros(self.num_embeddings, dtype=torch.int64)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_free_qat(self, kind):
        """Train the free coordinates' E quantization-aware from now on: the forward
        uses E's rows as a file with free_dtype=kind stores them ("int8", "int4",
        "int8-sym", "int4-sym"; None: F32 again), the gradient of E passes straight
        through to the F32 parameter `free` (fpd.Engine's free_qat; needs free
        coordinates). save / fpd.torch.save then store E in that kind unless told
        otherwise (free_dtype=)."""
        if kind is not None and not self._layer.free_coords:
            raise ValueError(f"{type(self).__name__}: set_free_qat({kind!r}) needs a layer with free coordinates")
        self._sync()
        self._engine = _fpd.Engine(self._layer, threads=self.threads, free_qat=kind)
        self.free_qat = kind

    # -- properties of the FPD table
    @property
    def layer(self):
        """The fpd.Layer (its cores are synchronized with the parameters first)."""
        self._sync()
        return self._layer

    @property
    def shape(self):
        """dict rows, dim, k, terms, row_shape, col_shape, ranks."""
        return self._layer.shape

    def _padding_idx_or_none(self):
        return self.padding_idx

    def _params(self):
        """The parameters the engine reads: the cores, then E and P when present (P
        alone when E is held as stored rows)."""
        if self._free_kind:
            return list(self.cores) + [self.free_proj]
        return list(self.cores) + ([self.free, self.free_proj] if self._fviews else [])

    def _bind_free_rows(self):
        """The buffer free_rows as a view of the layer's stored rows, and what was seen."""
        self.free_rows = torch.from_numpy(self._layer._free_rows_view(True))
        self._rows_seen = (self.free_rows.data_ptr(), self.free_rows._version)

    def _check_free_form(self):
        """A stored module's layer must still hold E as its rows (expand_free, store_free
        or set_free_coords on module.layer would leave the buffer over freed memory)."""
        if self._free_kind and self._layer.free_stored != self._free_kind:
            raise RuntimeError(f"{type(self).__name__}: its layer's E was changed under it (now "
                               f"{self._layer.free_stored or 'float32'}, the module holds {self._free_kind} rows); "
                               "make a new module: from_file(...) without free_stored=True to train, or with it "
                               "for inference")

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        self._check_free_form()
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _sync_free_rows(self):
        """Stored E: rows written through the buffer (load_state_dict, in place) or a
        buffer replaced are checked and copied into the layer (Layer.set_free_stored);
        then the buffer, P and the engine are bound to the layer's new memory."""
        self._check_free_form()
        b = self.free_rows
        if b is None or (b.data_ptr(), b._version) == self._rows_seen:
            return
        if b.device.type != "cpu":
            raise RuntimeError(_CUDA_MSG.format(type(self).__name__))
        want = tuple(self._layer._free_rows_view(False).shape)
        if b.dtype != torch.uint8 or tuple(b.shape) != want:
            raise RuntimeError(f"{type(self).__name__}: free_rows is {b.dtype} {tuple(b.shape)}; the layer's "
                               f"{self._free_kind} rows are torch.uint8 {want}")
        rows = b.detach().contiguous().numpy().copy()
        P = self._layer.free_p.copy()
        try:
            self._layer.set_free_stored(self._free_kind, rows, P)  # checks every row; new memory
        except _fpd.FPDError as e:
            raise _fpd.FPDError(e.status, f"{type(self).__name__}: buffer free_rows: {e.message}") from None
        self._fviews = [torch.from_numpy(self._layer.free_p)]
        self.free_proj.data = self._fviews[0]
        self._bind_free_rows()
        self._engine = _fpd.Engine(self._layer, threads=self.threads, free_qat=self.free_qat)

    def _sync(self):
        """Make the layer hold the parameters' values: a no-op while the parameters
        share the layer's memory; a copy when something replaced their storage."""
        names = [f"cores.{m}" for m in range(len(self._views))] + (["free_proj"] if self._free_kind
                                                                   else ["free", "free_proj"])
        for m, (p, v) in enumerate(zip(self._params(), self._views + self._fviews)):
            if p.device.type != "cpu":
                raise RuntimeError(_CUDA_MSG.format(type(self).__name__))
            if p.data_ptr() != v.data_ptr() or p.dtype != torch.float32:
                if p.shape != v.shape:
                    raise RuntimeError(f"{type(self).__name__}: {names[m]} has shape {tuple(p.shape)}; the layer's "
                                       f"holds {tuple(v.shape)}")
                with torch.no_grad():
                    v.copy_(p.detach())
        if self._free_kind:
            self._sync_free_rows()
        if self.row_perm is not None:
            seen = (self.row_perm.data_ptr(), self.row_perm._version)
            if seen != self._perm_seen:
                self._layer.set_row_perm(self.row_perm.detach().cpu().numpy())
                self._perm_seen = seen

    def _repr(self, mode, **flags):
        s = self._layer.shape
        out = f"{self.num_embeddings}, {self.embedding_dim}{mode}"
        if self.padding_idx is not None:
            out += f", padding_idx={self.padding_idx}"
        flags["sparse"] = self.sparse
        out += "".join(f", {k}=True" for k, v in flags.items() if v)
        if self._layer.free_coords:
            out += f", free_coords={self._layer.free_coords}"
        if self._free_kind:
            out += f", free_stored={self._free_kind!r}"
        return out + (f", terms={s['terms']}, row_shape={s['row_shape']}, col_shape={s['col_shape']}, "
                      f"ranks={s['ranks']}")

    def _check_ids(self, flat):
        if flat.size and (flat.min() < 0 or flat.max() >= self.num_embeddings):
            raise IndexError("index out of range in self")

    def _run(self, batch, per_sample_weights):
        self._sync()
        psw = per_sample_weights if per_sample_weights is not None else torch.zeros(0)
        return _FPDFunction.apply(self, batch, psw, *self._params())

    def _check_device(self, *tensors):
        for t in tensors:
            if t is not None and t.device.type != "cpu":
                raise RuntimeError(_CUDA_MSG.format(type(self).__name__))

    # -- files
    @classmethod
    def from_file(cls, path, name=None, free_stored=False, **kwargs):
        """The FPD table `name` of a checkpoint (the only one when name is None), read
        by libfpd's checkpoint reader; kwargs as the module's constructor (FPDEmbeddingBag:
        mode, padding_idx, include_last_offset, sparse, freeze ...; FPDEmbedding:
        padding_idx, sparse, freeze ...). save() then stores E in the file's kind by default.

        free_stored=True: for inference: the module is frozen unless freeze=False is given.
        When the file stores the free coordinates' E as int8/int4 rows (free-rowwise/1,
        free-sym/1), E stays so in memory (int4-sym, c = 10: 7 bytes a row instead of 40;
        Checkpoint.load_layer(free_stored=True)): freeze=False is then refused, `free` is
        None and the buffer `free_rows` (uint8 [rows, row bytes], in state_dict) holds the
        rows; outputs are bit for bit those of the module loaded without it. E in float32
        in the file stays a float32 parameter."""
        if free_stored:
            kwargs.setdefault("freeze", True)
        with _fpd.open(path) as ck:
            tables = ck.tables
            if name is None:
                if len(tables) != 1:
                    raise KeyError(f"{path} holds {len(tables)} FPD tables ({', '.join(tables)}); name one")
                name = tables[0]
            if name not in tables:
                raise KeyError(f"{path} has no FPD table '{name}' (it has: {', '.join(tables) or 'none'})")
            layer = ck.load_layer(name, free_stored=bool(free_stored))
            fd = ck.table_info(name).get("free_dtype")
        m = cls._from_layer(layer, **kwargs)
        m._file_free_dtype = fd if fd in ("int8", "int4", "int8-sym", "int4-sym") else None
        m.table_name = name
        return m

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, *, rank=None, terms=None, k=None, budget=None, ratio=None,
                        max_error=None, epochs=1, als_sweeps=2, seed=0, **kwargs):
        """Fit an FPD layer to `embeddings` [N, D] with libfpd's fit (fpd.fit) and wrap
        it; freeze as nn.EmbeddingBag.from_pretrained (True: the cores are not
        trained); the other options (mode, padding_idx, include_last_offset, sparse
        ...) are keywords. The shape is the heuristic's unless rank / terms / k are given;
        budget (bytes), ratio or max_error pick among its candidates. .fit_report holds
        the fit's errors."""
        if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2:
            raise ValueError("Embeddings parameter is expected to be 2-dimensional")
        if embeddings.device.type != "cpu":
            raise RuntimeError(_CUDA_MSG.format(cls.__name__))
        W = embeddings.detach().to(torch.float32).contiguous().numpy()
        layer, report = _fpd.fit(W, rank=rank, terms=terms, k=k, budget=budget, ratio=ratio, max_error=max_error,
                                 epochs=epochs, als_sweeps=als_sweeps, seed=seed)
        m = cls._from_layer(layer, freeze=freeze, **kwargs)
        m.fit_report = report
        return m

    def save(self, path, name=None, reference=None, tensors=None, core_dtype="F32", overwrite=False,
             free_dtype=None):
        """Write this table as FPD v1 (fpd.save): name defaults to the name it was read
        under. rel_error is recomputed against `reference` (the dense table) when given,
        else written as null; "fit" records "+torch". free_dtype "int8"/"int4": E of the
        free coordinates stored row-wise (free-rowwise/1); "int8-sym"/"int4-sym":
        symmetric codes and an F16 scale a row (free-sym/1); "core": F32; as fpd.save.
        None: the kind set_free_qat trains E in, if any, else the kind of the file the
        module was read from (from_file), else F32."""
        name = name or getattr(self, "table_name", None)
        if not name:
            raise ValueError("save needs a table name (the module was not read from a file)")
        modules = dict(tensors or {})
        modules[name] = self
        save(path, modules, references=None if reference is None else {name: reference}, core_dtype=core_dtype,
             overwrite=overwrite, free_dtype=free_dtype)

    def _layer_for_save(self):
        layer = self.layer
        info = dict(layer.info)
        fit = info.get("fit", "init")
        info["fit"] = fit if fit.endswith("+torch") else fit + "+torch"
        out = layer.clone()
        out.info = info
        return out


def _args_check(max_norm, scale_grad_by_freq, device, dtype, name):
    if max_norm is not None:
        raise NotImplementedError(f"{name}: max_norm is not supported (the rows are products of cores; "
                                  "renormalizing them would change other rows)")
    if scale_grad_by_freq:
        raise NotImplementedError(f"{name}: scale_grad_by_freq is not supported")
    if device is not None and torch.device(device).type != "cpu":
        raise RuntimeError(_CUDA_MSG.format(name))
    if dtype is not None and dtype != torch.float32:
        raise NotImplementedError(f"{name}: dtype {dtype}: libfpd computes in float32")


def _new_layer(num_embeddings, embedding_dim, _weight, rank, terms, k, seed, init_scale):
    if _weight is not None:
        if tuple(_weight.shape) != (num_embeddings, embedding_dim):
            raise AssertionError("Shape of weight does not match num_embeddings and embedding_dim")
        return _fpd.fit(_weight.detach().to(torch.float32).contiguous().numpy(), rank=rank, terms=terms, k=k,
                        seed=seed or 0)[0]
    if seed is None:  # draw from torch's generator, so torch.manual_seed decides the init
        seed = int(torch.randint(0, 2**62, (1,)).item())
    return _fpd.Layer.init(num_embeddings, embedding_dim, rank=rank, terms=terms, k=k, kind="normal",
                           scale=init_scale, seed=seed)


class FPDEmbeddingBag(_FPDModule):
    """torch.nn.EmbeddingBag whose table is an FPD layer.

    Same constructor and forward as nn.EmbeddingBag (max_norm and scale_grad_by_freq
    are refused; sparse=True gives sparse core gradients for SparseAdam / SGD), plus
    keyword-only rank, terms, k (the layer's shape; default: the heuristic's),
    seed (init; default drawn from torch's generator), init_scale (the table is
    normal(0, init_scale^2), as nn.EmbeddingBag's normal(0, 1)), threads (the engine's
    CPU threads; default torch.get_num_threads()). `_weight` is fitted (fpd.fit).

    forward(input, offsets=None, per_sample_weights=None): input 1-D with offsets or
    2-D [bags, L]; mode "sum" or "mean" (per_sample_weights with "sum" only, and
    differentiable); padding_idx entries are skipped (not counted by "mean"); empty
    bags give zeros; ids out of range raise IndexError."""

    def __init__(self, num_embeddings, embedding_dim, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
                 mode="mean", sparse=False, _weight=None, include_last_offset=False, padding_idx=None,
                 device=None, dtype=None, *, rank=None, terms=None, k=None, seed=None, init_scale=1.0, threads=None,
                 layer=None, freeze=False):
        super().__init__()
        _args_check(max_norm, scale_grad_by_freq, device, dtype, type(self).__name__)
        if mode not in ("sum", "mean", "max"):
            raise ValueError("mode has to be one of sum, mean or max")
        if mode == "max":
            raise NotImplementedError("FPDEmbeddingBag: mode 'max' is not supported (libfpd pools sum and mean)")
        if layer is None:
            layer = _new_layer(num_embeddings, embedding_dim, _weight, rank, terms, k, seed, init_scale)
        elif (layer.rows, layer.dim) != (num_embeddings, embedding_dim):
            raise ValueError(f"layer is {layer.rows} x {layer.dim}, not {num_embeddings} x {embedding_dim}")
        self.mode, self.include_last_offset = mode, bool(include_last_offset)
        self.max_norm, self.norm_type, self.scale_grad_by_freq = None, norm_type, False
        self._setup(layer, padding_idx, sparse, threads, freeze)

    @classmethod
    def _from_layer(cls, layer, freeze=False, max_norm=None, norm_type=2.0, scale_grad_by_freq=False, mode="mean",
                    sparse=False, include_last_offset=False, padding_idx=None, threads=None):
        return cls(layer.rows, layer.dim, max_norm, norm_type, scale_grad_by_freq, mode, sparse, None,
                   include_last_offset, padding_idx, threads=threads, layer=layer, freeze=freeze)

    def forward(self, input, offsets=None, per_sample_weights=None):
        self._check_device(input, offsets, per_sample_weights)
        if per_sample_weights is not None and input.size() != per_sample_weights.size():
            raise ValueError(f"embedding_bag: If per_sample_weights ({per_sample_weights.shape}) is not None, "
                             f"then it must have the same shape as the input ({input.shape})")
        if input.dim() == 2:  # as torch.nn.functional.embedding_bag
            if offsets is not None:
                raise ValueError("if input is 2D, then offsets has to be None, as input is treated is a mini-batch "
                                 "of fixed length sequences. However, found offsets of type {}".format(type(offsets)))
            offsets = torch.arange(0, input.numel(), input.size(1), dtype=torch.int64)
            input = input.reshape(-1)
            if per_sample_weights is not None:
                per_sample_weights = per_sample_weights.reshape(-1)
        elif input.dim() == 1:
            if offsets is None:
                raise ValueError("offsets has to be a 1D Tensor but got None")
            if offsets.dim() != 1:
                raise ValueError("offsets has to be a 1D Tensor")
        else:
            raise ValueError(f"input has to be 1D or 2D Tensor, but got Tensor of dimension {input.dim()}")
        if per_sample_weights is not None and self.mode != "sum":
            raise NotImplementedError("embedding_bag: per_sample_weights was not None. per_sample_weights is only "
                                      f"supported for mode='sum' (got mode='{self.mode}'). Please open a feature "
                                      "request on GitHub.")
        ids = _np_i64(input)
        self._check_ids(ids)
        w = None
        if per_sample_weights is not None:
            w = per_sample_weights.detach().to(torch.float32).contiguous().numpy()
        batch = _fpd._batch(ids, _np_i64(offsets), self.mode, w, self.padding_idx, self.include_last_offset)
        return self._run(batch, per_sample_weights)

    def _bag_of_entries(self, batch):
        """The bag of each entry of a batch; -1 for entries past the last offset
        (include_last_offset), which are in no bag."""
        b = batch[0]
        n = b.n_indices
        offs = batch[1][1]
        ends = offs[1:] if b.include_last_offset else np.append(offs[1:], n)
        starts = offs[:-1] if b.include_last_offset else offs
        counts = np.maximum(ends - starts, 0)
        bag = np.repeat(np.arange(starts.size), counts)
        if bag.size < n:
            bag = np.append(bag, np.full(n - bag.size, -1, np.int64))
        return bag

    def extra_repr(self):
        return self._repr(f", mode={self.mode!r}", include_last_offset=self.include_last_offset)


class FPDEmbedding(_FPDModule):
    """torch.nn.Embedding whose table is an FPD layer: forward(input) of any shape gives
    [*input.shape, embedding_dim]; padding_idx entries give zero rows and no gradient
    (the FPD table has no row of its own to zero: the entry is skipped). Constructor as
    nn.Embedding plus the keyword-only options of FPDEmbeddingBag."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, _weight=None, _freeze=False, device=None, dtype=None, *,
                 rank=None, terms=None, k=None, seed=None, init_scale=1.0, threads=None, layer=None):
        super().__init__()
        _args_check(max_norm, scale_grad_by_freq, device, dtype, type(self).__name__)
        if layer is None:
            layer = _new_layer(num_embeddings, embedding_dim, _weight, rank, terms, k, seed, init_scale)
        elif (layer.rows, layer.dim) != (num_embeddings, embedding_dim):
            raise ValueError(f"layer is {layer.rows} x {layer.dim}, not {num_embeddings} x {embedding_dim}")
        self.max_norm, self.norm_type, self.scale_grad_by_freq = None, norm_type, False
        self._setup(layer, padding_idx, sparse, threads, _freeze)

    @classmethod
    def _from_layer(cls, layer, freeze=False, padding_idx=None, max_norm=None, norm_type=2.0,
                    scale_grad_by_freq=False, sparse=False, threads=None):
        return cls(layer.rows, layer.dim, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, None,
                   freeze, threads=threads, layer=layer)

    def forward(self, input):
        self._check_device(input)
        ids = _np_i64(input)
        self._check_ids(ids.reshape(-1))
        batch = _fpd._batch(ids, None, "none", None, self.padding_idx)
        return self._run(batch, None)

    def extra_repr(self):
        return self._repr("")


def load_embedding_bag(path, name, **kwargs):
    """Table `name` of a checkpoint as an EmbeddingBag, whatever fpd-compress wrote:
    an FPD table as an FPDEmbeddingBag (FPDEmbeddingBag.from_file), a row-wise
    int8/int4 table (extension rowwise/1) dequantized into an nn.EmbeddingBag
    (from_pretrained: frozen unless freeze=False), a dense 2-D tensor likewise.
    kwargs: the modules' keywords (mode, padding_idx, include_last_offset, freeze...),
    and free_stored (FPDEmbeddingBag.from_file; ignored for the other encodings)."""
    free_stored = kwargs.pop("free_stored", False)
    with _fpd.open(path) as ck:
        if name in ck.tables:
            return FPDEmbeddingBag.from_file(path, name, free_stored=free_stored, **kwargs)
        if name not in ck.rowwise_tables and name not in ck.tensors:
            raise KeyError(f"{path} has no table '{name}'")
        w = torch.from_numpy(ck.dense(name))
    if w.dim() != 2:
        raise ValueError(f"{path}: tensor '{name}' is not a 2-D table (shape {tuple(w.shape)})")
    return nn.EmbeddingBag.from_pretrained(w, **kwargs)


def save(path, modules, references=None, core_dtype="F32", overwrite=False, metadata=None, free_dtype=None):
    """Write several tables and tensors as one FPD v1 checkpoint: modules maps a name
    to an FPDEmbeddingBag / FPDEmbedding (written as an FPD table) or to a tensor
    (written unchanged). references: {name: dense table} to recompute rel_error
    (else null). free_dtype: "int8", "int4", "int8-sym" or "int4-sym" for the free
    coordinates' E (fpd.save), "core" (F32), or None: for each module the kind it trains
    E in (set_free_qat), else the kind of the file it was read from (from_file), else
    F32; the modules' kinds must then agree."""
    if free_dtype is None:
        kinds = {getattr(m, "free_qat", None) or getattr(m, "_file_free_dtype", None) for m in modules.values()
                 if isinstance(m, _FPDModule) and m._layer.free_coords}
        if len(kinds) > 1:
            raise ValueError(f"the modules hold or train E in different kinds ({', '.join(sorted(map(str, kinds)))}; "
                             "None: float32); one file stores E in one: pass free_dtype")
        free_dtype = kinds.pop() if kinds else None
    tables, tensors = {}, {}
    for name, m in modules.items():
        if isinstance(m, _FPDModule):
            tables[name] = m._layer_for_save()
        elif isinstance(m, torch.Tensor):
            tensors[name] = m.detach().cpu().contiguous().numpy()
        else:
            tensors[name] = np.asarray(m)
    refs = {}
    for name, r in (references or {}).items():
        refs[name] = r.detach().to(torch.float32).cpu().contiguous().numpy() if isinstance(r, torch.Tensor) else r
    _fpd.save(path, tables, tensors, metadata, refs, core_dtype, overwrite, free_dtype)


def replace_embeddings(model, budget=None, ratio=None, max_error=None, rank=None, terms=None, k=None, min_rows=1000,
                       min_ratio=2.0, fit=True, epochs=1, als_sweeps=2, seed=0, predict_errors=False):
    """Swap the large nn.Embedding / nn.EmbeddingBag modules of `model` for FPD ones,
    in place, with the (r, p) heuristic (fpd.plan) choosing each table's shape.

    budget: bytes for the cores of all replaced tables together, shared in proportion
      to their dense sizes (each table takes the largest candidate within its share);
    ratio: a minimum compression ratio per table; max_error: the smallest candidate
      predicted at or below it (needs the table's data: fit=True);
    rank / terms / k: restrict the candidates. Tables with fewer than min_rows rows, or
      gaining less than min_ratio, stay dense, as do modules using max_norm or
      scale_grad_by_freq.
    fit: True fits the cores to the current weights (libfpd's fit); False starts from
      random cores with the weights' standard deviation (training from scratch).
    The options mode, padding_idx, include_last_offset, sparse and requires_grad carry
    over. Returns one dict per embedding module: name, rows, dim, replaced, reason
    (when not), r, p, k, bytes_before, bytes_after, ratio, rel_error (with fit)."""
    found = [(n, m) for n, m in model.named_modules()
             if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and not isinstance(m, _FPDModule)]
    eligible = [(n, m) for n, m in found if m.weight.shape[0] >= min_rows]
    total = sum(m.weight.numel() * m.weight.element_size() for _, m in eligible)
    report = []
    for name, mod in found:
        N, D = mod.weight.shape
        entry = {"name": name, "rows": N, "dim": D, "replaced": False,
                 "bytes_before": mod.weight.numel() * mod.weight.element_size()}
        report.append(entry)
        if N < min_rows:
            entry["reason"] = f"{N} rows < min_rows {min_rows}"
            continue
        if mod.max_norm is not None or mod.scale_grad_by_freq or (isinstance(mod, nn.EmbeddingBag) and mod.mode == "max"):
            entry["reason"] = "uses max_norm, scale_grad_by_freq or mode 'max'"
            continue
        share = int(budget * entry["bytes_before"] / total) if budget else None
        W = mod.weight.detach().to(torch.float32).cpu().contiguous().numpy()
        try:
            pl = _fpd.plan(N, D, table=W if (max_error or predict_errors) else None, rank=rank, terms=terms, k=k,
                           budget=share, ratio=ratio, max_error=max_error, min_rows=min_rows, min_ratio=min_ratio)
        except _fpd.FPDError as e:
            entry["reason"] = e.message
            continue
        if not pl["compress"]:
            entry["reason"] = pl["reason"]
            continue
        shp = pl["shape"]
        if fit:
            layer, rep = _fpd.fit(W, shape=shp, epochs=epochs, als_sweeps=als_sweeps, seed=seed)
            entry["rel_error"] = rep["rel_error_final"]
        else:
            std = float(W.std()) or 1.0
            layer = _fpd.Layer.init(N, D, kind="normal", scale=std, seed=seed, row_shape=shp["row_shape"],
                                    col_shape=shp["col_shape"], ranks=shp["ranks"], terms=shp["terms"])
        freeze = not mod.weight.requires_grad
        if isinstance(mod, nn.EmbeddingBag):
            new = FPDEmbeddingBag._from_layer(layer, freeze=freeze, mode=mod.mode, sparse=mod.sparse,
                                              include_last_offset=mod.include_last_offset,
                                              padding_idx=mod.padding_idx)
        else:
            new = FPDEmbedding._from_layer(layer, freeze=freeze, padding_idx=mod.padding_idx, sparse=mod.sparse)
        new.table_name = name + ".weight"
        parent = model
        *path, leaf = name.split(".")
        for p in path:
            parent = getattr(parent, p)
        setattr(parent, leaf, new)
        entry.update({"replaced": True, "r": max(shp["ranks"]), "p": shp["terms"], "k": shp["k"],
                      "row_shape": shp["row_shape"], "col_shape": shp["col_shape"], "bytes_after": pl["bytes_after"],
                      "ratio": pl["ratio"]})
    return report
