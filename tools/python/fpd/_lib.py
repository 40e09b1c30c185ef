"""ctypes declarations of libfpd's public API (lib/fpd.h, formats/fpd-formats.h,
heuristics/fpd-heuristics.h) and the loader of libfpd.so.

The structs below mirror the C headers field for field; ctypes lays them out with the
platform C ABI's alignment, as the compiler does. tests/python/test_fpd.py compiles a
small C program against the headers and compares every field's offset and every
struct's size with these declarations, so a header change that is not mirrored here
fails a test instead of corrupting memory.

Where libfpd.so is found (first match wins):
  1. the FPD_LIBRARY environment variable (a path to the .so);
  2. the repository's build/libfpd.so, relative to this file, when the package is
     used from the source tree (tools/python/fpd/ -> ../../../build/), e.g. after
     `pip install -e tools/python` or with PYTHONPATH=tools/python;
  3. ctypes.util.find_library("fpd") (an installed libfpd: `make install`, ldconfig).
"""
import ctypes
import ctypes.util
import os
import threading
from ctypes import (POINTER, Structure, c_bool, c_char, c_char_p, c_double, c_float, c_int, c_int32, c_int64,
                    c_size_t, c_uint, c_uint64, c_void_p)

MAX_DIMS = 8   # FPD_MAX_DIMS
MAX_MODES = 8  # FPD_MAX_MODES

# enum fpd_dtype, in the header's order
DTYPES = ["F32", "F64", "F16", "BF16", "I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64", "BOOL",
          "F8_E4M3", "F8_E5M2", "F8_E8M0", "C64"]
DTYPE = {name: i for i, name in enumerate(DTYPES)}

BAG_MODE = {"sum": 0, "mean": 1, "none": 2}
OPTIMIZER = {"sgd": 0, "rowwise_adagrad": 1, "adam": 2, "lazy_adam": 3}
ROWWISE = {"int8": 0, "int4": 1}  # enum fpd_rowwise
# enum fpd_free_kind: how a checkpoint stores the free coordinates' E (int8/int4:
# free-rowwise/1, FBGEMM's rows; int8-sym/int4-sym: free-sym/1, symmetric codes and an
# F16 scale a row)
FREE_KINDS = {"int8": 0, "int4": 1, "int8-sym": 2, "int4-sym": 3}
FREE_KIND_NAMES = list(FREE_KINDS)
INIT_KIND = {"normal": 0, "uniform": 1}
WRITE_OVERWRITE = 1


class Error(Structure):
    _fields_ = [("status", c_int), ("msg", c_char * 512), ("line", c_int64), ("column", c_int64)]


class LayerShape(Structure):
    _fields_ = [("rows", c_int64), ("dim", c_int64), ("k", c_int32), ("terms", c_int64),
                ("row_shape", c_int64 * MAX_MODES), ("col_shape", c_int64 * MAX_MODES),
                ("ranks", c_int64 * (MAX_MODES + 1))]


class TableView(Structure):
    _fields_ = [("data", c_void_p), ("dtype", c_int), ("rows", c_int64), ("dim", c_int64)]


PROGRESS_CB = ctypes.CFUNCTYPE(c_bool, c_char_p, c_int64, c_int64, c_void_p)


class FitParams(Structure):
    _fields_ = [("backfit_sweeps", c_int64), ("backfit_tol", c_double), ("als_sweeps", c_int64),
                ("als_tol", c_double), ("finetune_epochs", c_int64), ("batch_rows", c_int64),
                ("learning_rate", c_double), ("seed", c_uint64), ("cluster_rows", c_bool),
                ("row_weights", POINTER(c_double)), ("progress", c_void_p), ("progress_user_data", c_void_p),
                ("backend", c_void_p),
                ("free_coords", c_int64), ("row_perm", POINTER(c_int64))]


class FitReport(Structure):
    _fields_ = [("rel_error_fit", c_double), ("rel_error_als", c_double), ("als_sweeps", c_int64),
                ("rel_error_final", c_double), ("backfit_sweeps", c_int64), ("finetune_epochs", c_int64),
                ("finetune_kept", c_bool), ("fit_seconds", c_double), ("finetune_seconds", c_double),
                ("rel_error_free", c_double)]


class ErrorStats(Structure):
    _fields_ = [("rel_error", c_double), ("cos_mean", c_double), ("cos_min", c_double),
                ("sq_error", c_double), ("sq_norm", c_double)]


class InitParams(Structure):
    _fields_ = [("kind", c_int), ("scale", c_double), ("seed", c_uint64)]


class BagBatch(Structure):
    _fields_ = [("indices", POINTER(c_int64)), ("n_indices", c_int64), ("offsets", POINTER(c_int64)),
                ("n_bags", c_int64), ("bag_size", c_int64), ("include_last_offset", c_bool),
                ("per_sample_weights", POINTER(c_float)), ("mode", c_int), ("padding_idx", c_int64)]


class OptimizerParams(Structure):
    _fields_ = [("kind", c_int), ("learning_rate", c_double), ("beta1", c_double), ("beta2", c_double),
                ("eps", c_double), ("lr_scale", c_double * MAX_MODES), ("free_lr_scale", c_double),
                ("free_proj_lr_scale", c_double), ("free_proj_fixed", c_bool)]


class EngineParams(Structure):
    _fields_ = [("backend", c_void_p), ("threads", c_int32), ("optimizer", OptimizerParams),
                ("free_qat", c_bool), ("free_qat_kind", c_int32)]


class TensorInfo(Structure):
    _fields_ = [("name", c_char_p), ("dtype", c_int), ("ndim", c_int32), ("shape", c_int64 * MAX_DIMS),
                ("data", c_void_p), ("nbytes", c_size_t)]


class TableMeta(Structure):
    _fields_ = [("shape", LayerShape), ("source_dtype", c_int), ("core_dtype", c_int), ("fit", c_char * 64),
                ("seed", c_uint64), ("rel_error", c_double), ("free_coords", c_int64), ("free_rowwise", c_bool),
                ("free_kind", c_int), ("vocabulary_order", c_bool)]


class RowwiseTable(Structure):
    _fields_ = [("data", c_void_p), ("kind", c_int), ("rows", c_int64), ("dim", c_int64)]


class PlanParams(Structure):
    _fields_ = [("rank", c_int64), ("terms", c_int64), ("k", c_int32), ("min_rows", c_int64),
                ("min_ratio", c_double), ("core_dtype", c_int), ("budget_bytes", c_size_t),
                ("min_ratio_target", c_double), ("max_error", c_double), ("table", POINTER(TableView)),
                ("free_coords", c_int64), ("free_rowwise", c_bool), ("free_kind", c_int)]


class Plan(Structure):
    _fields_ = [("compress", c_bool), ("reason", c_char * 256), ("shape", LayerShape), ("params", c_int64),
                ("padding", c_int64), ("bytes_before", c_size_t), ("bytes_after", c_size_t), ("ratio", c_double),
                ("predicted_error", c_double), ("free_coords", c_int64)]


class Candidate(Structure):
    _fields_ = [("shape", LayerShape), ("r", c_int64), ("params", c_int64), ("padding", c_int64),
                ("bytes", c_size_t), ("ratio", c_double), ("score", c_double), ("predicted_error", c_double),
                ("dominated", c_bool), ("eligible", c_bool), ("free_coords", c_int64)]


class Suggestion(Structure):
    _fields_ = [("rows", c_int64), ("dim", c_int64), ("dtype", c_int), ("core_dtype", c_int),
                ("bytes_before", c_size_t), ("k_default", c_int32), ("col_rank", c_int64),
                ("saturation_rank", c_int64), ("rank_step", c_int64), ("target_rank", c_int64),
                ("n_candidates", c_int64), ("candidates", POINTER(Candidate)), ("selected", c_int64),
                ("compress", c_bool), ("reason", c_char * 256), ("errors_known", c_bool),
                ("estimate", c_char * 256)]


class CompressParams(Structure):
    _fields_ = [("encoding", c_int), ("max_error", c_double), ("plan", POINTER(PlanParams)), ("fit", FitParams),
                ("tables", POINTER(c_char_p)), ("n_tables", c_int64), ("row_freq_tables", POINTER(c_char_p)),
                ("row_freq_files", POINTER(c_char_p)), ("n_row_freq", c_int64), ("recall_queries", c_int64),
                ("overwrite", c_bool), ("progress", c_void_p), ("progress_user_data", c_void_p),
                ("cancel", c_void_p), ("cancel_user_data", c_void_p), ("init_interactions", c_char_p),
                ("init_id_base", c_int64), ("init_column", c_int32), ("order_tables", POINTER(c_char_p)),
                ("order_files", POINTER(c_char_p)), ("order_columns", POINTER(c_int32)), ("n_order", c_int64),
                ("free_rowwise", c_bool), ("free_kind", c_int)]


class NcfMetrics(Structure):
    _fields_ = [("hr10", c_double), ("ndcg10", c_double), ("users", c_int64)]


# enum fpd_compress_encoding, in the header's order
COMPRESS_ENCODINGS = ["fpd", "auto", "int8", "int4", "dense"]
COMPRESS_ENCODING = {name: i for i, name in enumerate(COMPRESS_ENCODINGS)}
CANCEL_CB = ctypes.CFUNCTYPE(c_bool, c_void_p)

# Every struct, by its C name (the layout test walks this).
STRUCTS = {"fpd_error": Error, "fpd_layer_shape": LayerShape, "fpd_table_view": TableView,
           "fpd_fit_params": FitParams, "fpd_fit_report": FitReport, "fpd_error_stats": ErrorStats,
           "fpd_init_params": InitParams, "fpd_bag_batch": BagBatch, "fpd_optimizer_params": OptimizerParams,
           "fpd_engine_params": EngineParams, "fpd_tensor_info": TensorInfo, "fpd_table_meta": TableMeta,
           "fpd_plan_params": PlanParams, "fpd_plan": Plan, "fpd_candidate": Candidate,
           "fpd_suggestion": Suggestion, "fpd_compress_params": CompressParams, "fpd_ncf_metrics": NcfMetrics}

P = c_void_p      # opaque handles
ST = c_int        # enum fpd_status
ERR = POINTER(Error)
I64P = POINTER(c_int64)
F32P = POINTER(c_float)

# name: (restype, argtypes)
PROTOTYPES = {
    "fpd_status_str": (c_char_p, [c_int]),
    "fpd_version": (c_char_p, []),
    "fpd_build_features": (c_char_p, []),
    "fpd_free": (None, [c_void_p]),
    "fpd_layer_shape_check": (ST, [POINTER(LayerShape), ERR]),
    "fpd_layer_shape_set_rank": (None, [POINTER(LayerShape), c_int64]),
    "fpd_layer_shape_core_numel": (c_int64, [POINTER(LayerShape), c_int32]),
    "fpd_layer_shape_params": (c_int64, [POINTER(LayerShape)]),
    "fpd_layer_init": (ST, [POINTER(LayerShape), POINTER(P), ERR]),
    "fpd_layer_free": (None, [P]),
    "fpd_layer_get_shape": (POINTER(LayerShape), [P]),
    "fpd_layer_core": (F32P, [P, c_int32]),
    "fpd_layer_clone": (ST, [P, POINTER(P), ERR]),
    "fpd_layer_set_row_perm": (ST, [P, I64P, ERR]),
    "fpd_layer_row_perm": (I64P, [P]),
    "fpd_layer_set_free_coords": (ST, [P, c_int64, F32P, F32P, ERR]),
    "fpd_layer_get_free_coords": (c_int64, [P]),
    "fpd_layer_quantize_free": (ST, [P, c_int, ERR]),
    "fpd_free_kind_name": (c_char_p, [c_int]),
    "fpd_free_kind_from_name": (c_bool, [c_char_p, POINTER(c_int)]),
    "fpd_free_kind_is_sym": (c_bool, [c_int]),
    "fpd_free_row_bytes": (c_size_t, [c_int, c_int64]),
    "fpd_free_quantize_rows": (c_int64, [c_int, F32P, c_int64, c_int64, c_void_p]),
    "fpd_free_coords_bytes": (c_size_t, [c_int64, c_int64, c_int64, c_int, c_bool, c_int]),
    "fpd_layer_get_free_e": (F32P, [P]),
    "fpd_layer_get_free_stored": (c_void_p, [P, POINTER(c_int)]),
    "fpd_layer_store_free": (ST, [P, c_int, ERR]),
    "fpd_layer_set_free_stored": (ST, [P, c_int64, c_int, c_void_p, F32P, ERR]),
    "fpd_layer_expand_free": (ST, [P, ERR]),
    "fpd_layer_free_memory_bytes": (c_size_t, [P]),
    "fpd_layer_get_free_p": (F32P, [P]),
    "fpd_layer_param_count": (c_int64, [P]),
    "fpd_fit_free_coords": (ST, [P, POINTER(TableView), c_int64, POINTER(c_double), ERR]),
    "fpd_layer_lookup": (ST, [P, I64P, c_int64, F32P, ERR]),
    "fpd_layer_reconstruct": (ST, [P, c_int64, c_int64, F32P, ERR]),
    "fpd_layer_error": (ST, [P, POINTER(TableView), POINTER(ErrorStats), ERR]),
    "fpd_fit_default_params": (FitParams, []),
    "fpd_fit": (ST, [POINTER(TableView), POINTER(LayerShape), POINTER(FitParams), POINTER(P), POINTER(FitReport),
                     ERR]),
    "fpd_init": (ST, [POINTER(LayerShape), POINTER(InitParams), POINTER(P), ERR]),
    "fpd_bag_batch_out_rows": (c_int64, [POINTER(BagBatch)]),
    "fpd_optimizer_default_params": (OptimizerParams, []),
    "fpd_engine_default_params": (EngineParams, []),
    "fpd_engine_init": (ST, [P, POINTER(EngineParams), POINTER(P), ERR]),
    "fpd_engine_free": (None, [P]),
    "fpd_engine_forward": (ST, [P, POINTER(BagBatch), F32P, ERR]),
    "fpd_engine_backward": (ST, [P, POINTER(BagBatch), F32P, ERR]),
    "fpd_engine_grad": (None, [P, c_int32, POINTER(F32P), POINTER(I64P), POINTER(c_int64)]),
    "fpd_engine_step": (ST, [P, ERR]),
    "fpd_engine_zero_grad": (None, [P]),
    "fpd_engine_last_flops": (c_double, [P]),
    # formats
    "fpd_safetensors_open": (ST, [c_char_p, POINTER(P), ERR]),
    "fpd_safetensors_free": (None, [P]),
    "fpd_safetensors_count": (c_int64, [P]),
    "fpd_safetensors_tensor": (POINTER(TensorInfo), [P, c_int64]),
    "fpd_safetensors_find": (POINTER(TensorInfo), [P, c_char_p]),
    "fpd_safetensors_metadata_count": (c_int64, [P]),
    "fpd_safetensors_metadata_at": (None, [P, c_int64, POINTER(c_char_p), POINTER(c_char_p)]),
    "fpd_safetensors_write": (ST, [c_char_p, POINTER(TensorInfo), c_int64, POINTER(c_char_p), POINTER(c_char_p),
                                   c_int64, c_uint, ERR]),
    "fpd_table_meta_to_json": (ST, [POINTER(TableMeta), POINTER(c_void_p), ERR]),
    "fpd_table_meta_from_json": (ST, [c_char_p, c_char_p, POINTER(TableMeta), ERR]),
    "fpd_checkpoint_check_table": (ST, [P, c_char_p, POINTER(TableMeta), ERR]),
    "fpd_checkpoint_load_layer": (ST, [P, c_char_p, POINTER(P), ERR]),
    "fpd_checkpoint_load_layer_stored": (ST, [P, c_char_p, POINTER(P), ERR]),
    "fpd_checkpoint_load_rowwise": (ST, [P, c_char_p, POINTER(RowwiseTable), c_void_p, ERR]),
    "fpd_checkpoint_verify_table": (ST, [P, c_char_p, c_bool, ERR]),
    "fpd_rowwise_quantize": (ST, [POINTER(TableView), c_int, c_void_p, POINTER(c_double), ERR]),
    "fpd_rowwise_row_bytes": (c_size_t, [c_int, c_int64]),
    "fpd_rowwise_lookup": (ST, [POINTER(RowwiseTable), POINTER(c_int64), c_int64, POINTER(c_float), ERR]),
    "fpd_rowwise_reconstruct": (ST, [POINTER(RowwiseTable), c_int64, c_int64, POINTER(c_float), ERR]),
    # heuristics
    "fpd_plan_default_params": (PlanParams, []),
    "fpd_plan_table": (ST, [c_int64, c_int64, c_int, POINTER(PlanParams), POINTER(Plan), ERR]),
    "fpd_suggest": (ST, [c_int64, c_int64, c_int, POINTER(PlanParams), POINTER(POINTER(Suggestion)), ERR]),
    "fpd_suggestion_free": (None, [POINTER(Suggestion)]),
    # the compression pipeline (lib/fpd.h) and NCF data (formats/fpd-formats.h)
    "fpd_compress_default_params": (CompressParams, []),
    "fpd_compress_checkpoint": (ST, [c_char_p, c_char_p, POINTER(CompressParams), POINTER(c_void_p), ERR]),
    "fpd_ncf_eval_file": (ST, [c_char_p, c_char_p, c_char_p, POINTER(NcfMetrics), ERR]),
}

_lib = None
_lib_path = None
_lock = threading.Lock()


def _candidates():
    env = os.environ.get("FPD_LIBRARY")
    if env:
        return [("FPD_LIBRARY", env)]
    here = os.path.dirname(os.path.abspath(__file__))
    out = [("source tree", os.path.normpath(os.path.join(here, "..", "..", "..", "build", "libfpd.so")))]
    found = ctypes.util.find_library("fpd")
    out.append(("find_library('fpd')", found))
    return out


def load():
    """The loaded libfpd (ctypes.CDLL), loading it on first use. Raises OSError naming
    every place that was tried when none has it."""
    global _lib, _lib_path
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        tried = []
        for how, path in _candidates():
            if not path:
                tried.append(f"{how}: not found")
                continue
            if how == "source tree" and not os.path.exists(path):
                tried.append(f"{how}: no {path}")
                continue
            try:
                lib = ctypes.CDLL(path)
            except OSError as e:
                tried.append(f"{how}: {path}: {e}")
                if how == "FPD_LIBRARY":
                    break
                continue
            for name, (res, args) in PROTOTYPES.items():
                fn = getattr(lib, name)
                fn.restype = res
                fn.argtypes = args
            _lib, _lib_path = lib, path
            return lib
        raise OSError("libfpd.so not found (" + "; ".join(tried) + "). Build it with `make` in the libfpd "
                      "repository, or set FPD_LIBRARY=/path/to/libfpd.so, or install it (make install; ldconfig)")


def path():
    """The path libfpd was loaded from (loading it if needed)."""
    load()
    return _lib_path
