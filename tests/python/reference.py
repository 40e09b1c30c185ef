"""Independent references and the report helper of the fpd package's tests
(tests/python/test_fpd.py, test_fpd_torch.py).

The references follow DESIGN.md section 2 literally, in double precision, with plain
loops over row digits, column digits and terms (no einsum, no code shared with the
package or the library): rows, the EmbeddingBag pooling of torch's documentation, and
core gradients from the product rule (W[i, j] is linear in each core entry, with
coefficient left partial product x right partial product).
"""
import json
import struct
import sys

import numpy as np

_results = {"ok": 0, "not ok": 0, "skip": 0}


def report(name, ok, why=""):
    """Print "ok NAME" / "not ok NAME: why" (the CLI runner counts these lines)."""
    if ok:
        _results["ok"] += 1
        print(f"ok {name}", flush=True)
    else:
        _results["not ok"] += 1
        print(f"not ok {name}: {why}", flush=True)


def skip(name, why):
    _results["skip"] += 1
    print(f"skip {name}: {why}", flush=True)


def finish():
    print(f"# {_results['ok']} ok, {_results['not ok']} not ok, {_results['skip']} skipped", file=sys.stderr)
    return 1 if _results["not ok"] else 0


def rel(a, b):
    """max |a - b| / max |b| (1e-30 floor)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)) if b.size else 0.0


def digits(x, modes):
    out = []
    for n in reversed(modes):
        out.append(x % n)
        x //= n
    return out[::-1]


def _mats(cores, t, dig, jd):
    return [np.asarray(cores[m][t, dig[m], :, jd[m], :], np.float64) for m in range(len(cores))]


def rows_by_definition(cores, row_shape, col_shape, perm, idx):
    """W[i, :] for original rows idx, double: per term, the product of the matrices
    G_m[t, i_m, :, j_m, :] for each column j."""
    k, p, D = len(cores), cores[0].shape[0], int(np.prod(col_shape))
    out = np.zeros((len(idx), D))
    for b, i in enumerate(idx):
        dig = digits(int(perm[i]) if perm is not None else int(i), row_shape)
        for j in range(D):
            jd = digits(j, col_shape)
            for t in range(p):
                v = np.ones((1, 1))
                for M in _mats(cores, t, dig, jd):
                    v = v @ M
                out[b, j] += v[0, 0]
    return out


def bags_of(n, offsets, include_last_offset):
    """[(start, end)] of each bag, as torch.nn.functional.embedding_bag reads offsets."""
    offsets = [int(x) for x in offsets]
    if include_last_offset:
        return list(zip(offsets[:-1], offsets[1:]))
    return list(zip(offsets, offsets[1:] + [n]))


def pool(rows, idx, bags, mode, weights=None, padding_idx=None):
    """EmbeddingBag pooling of per-entry rows [n, D] (double): padding entries skipped
    and not counted by mean, empty bags zero."""
    out = np.zeros((len(bags), rows.shape[1]))
    for b, (s, e) in enumerate(bags):
        keep = [q for q in range(s, e) if padding_idx is None or idx[q] != padding_idx]
        for q in keep:
            out[b] += rows[q] * (1.0 if weights is None else float(weights[q]))
        if mode == "mean" and keep:
            out[b] /= len(keep)
    return out


def entry_coefs(n, idx, bags, mode, weights=None, padding_idx=None):
    """(bag, coefficient) of each entry: out[bag] += coef * row[entry]."""
    coef, bag = np.zeros(n), np.full(n, -1)
    for b, (s, e) in enumerate(bags):
        keep = [q for q in range(s, e) if padding_idx is None or idx[q] != padding_idx]
        for q in keep:
            bag[q] = b
            c = 1.0 if weights is None else float(weights[q])
            coef[q] = c / len(keep) if mode == "mean" else c
    return bag, coef


def core_grads_by_definition(cores, row_shape, col_shape, perm, idx, bag, coef, grad_out):
    """dL/dG_m for L = sum(grad_out * out) with out[bag[q]] += coef[q] * W[idx[q]]:
    dW[i, j] / dG_m[t, i_m, a, j_m, b] = (G_0 .. G_{m-1})[0, a] * (G_{m+1} .. G_{k-1})[b, 0]."""
    k, p, D = len(cores), cores[0].shape[0], int(np.prod(col_shape))
    grads = [np.zeros(c.shape) for c in cores]
    for q, i in enumerate(idx):
        if bag[q] < 0:
            continue
        dig = digits(int(perm[i]) if perm is not None else int(i), row_shape)
        for j in range(D):
            gj = coef[q] * float(grad_out[bag[q], j])
            if gj == 0.0:
                continue
            jd = digits(j, col_shape)
            for t in range(p):
                Ms = _mats(cores, t, dig, jd)
                left = [np.ones((1, 1))]
                for M in Ms[:-1]:
                    left.append(left[-1] @ M)
                right = [np.ones((1, 1))]
                for M in reversed(Ms[1:]):
                    right.append(M @ right[-1])
                right = right[::-1]
                for m in range(k):
                    grads[m][t, dig[m], :, jd[m], :] += gj * np.outer(left[m][0, :], right[m][:, 0])
    return grads


def read_safetensors(path):
    """(header dict, metadata dict, data bytes), parsed here (not by libfpd)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    return header, meta, data


def st_tensor(header, data, name):
    """A tensor of a parsed safetensors file as NumPy (F32 F64 F16 I32 I64 U8)."""
    t = header[name]
    dt = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I32": "<i4", "I64": "<i8", "U8": "u1"}[t["dtype"]]
    b, e = t["data_offsets"]
    return np.frombuffer(data[b:e], dtype=dt).reshape(t["shape"])


def random_cores(rng, p, row_shape, col_shape, ranks, dtype=np.float32):
    return [rng.standard_normal((p, row_shape[m], ranks[m], col_shape[m], ranks[m + 1])).astype(dtype)
            for m in range(len(row_shape))]
