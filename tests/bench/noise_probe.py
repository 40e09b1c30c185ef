#!/usr/bin/env python3
"""How much reconstruction error a real model tolerates (README, "Choosing the default
--max-error"): add Gaussian noise of relative Frobenius error e to the tables and measure
the model's own metric. Not run by `make test`.

  python3 tests/bench/noise_probe.py ncf   BUILD DATA   # HR@10 of NCF GMF-8 (fpd-eval), 3 seeds
  python3 tests/bench/noise_probe.py glove DATA         # recall@10 of GloVe 20k x 100, 200 queries

"per row": each row gets noise of e times its own norm (as row-wise quantization spreads
its error); "isotropic": one noise level for every entry. Both scaled so that
||noise||_F = e ||W||_F exactly.
"""
import json, os, struct, subprocess, sys, tempfile
import numpy as np

ES = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5)


def noise(W, e, mode, rng):
    Z = rng.standard_normal(W.shape)
    if mode == 'row':
        Z *= np.linalg.norm(W, axis=1, keepdims=True) / np.linalg.norm(Z, axis=1, keepdims=True)
    return Z * (e * np.linalg.norm(W) / np.linalg.norm(Z))


def read_st(path):
    d = open(path, 'rb').read()
    n = struct.unpack('<Q', d[:8])[0]
    h = json.loads(d[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == '__metadata__':
            continue
        assert v['dtype'] == 'F32', (k, v['dtype'])
        b0, b1 = v['data_offsets']
        out[k] = np.frombuffer(d[8 + n + b0:8 + n + b1], dtype='<f4').reshape(v['shape']).astype(np.float64)
    return out


def write_st(path, tensors):
    hdr, off, blobs = {}, 0, []
    for k in sorted(tensors):
        b = np.ascontiguousarray(tensors[k], dtype='<f4').tobytes()
        hdr[k] = {'dtype': 'F32', 'shape': list(tensors[k].shape), 'data_offsets': [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr).encode()
    h += b' ' * (-len(h) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


def ncf(build, data):
    n = os.path.join(data, 'ncf')
    src = read_st(os.path.join(n, 'ncf_gmf8_ml1m.safetensors'))
    tmp = os.path.join(tempfile.mkdtemp(), 'noisy.safetensors')
    for mode in ('row', 'iso'):
        for e in ES:
            hs = []
            for seed in range(3):
                rng = np.random.default_rng(seed)
                t = dict(src)
                for name in ('user_embedding.weight', 'item_embedding.weight'):
                    t[name] = src[name] + noise(src[name], e, mode, rng)
                write_st(tmp, t)
                out = subprocess.run([os.path.join(build, 'fpd-eval'), tmp, '--ncf', os.path.join(n, 'ml-1m.test.rating'),
                                      os.path.join(n, 'ml-1m.test.negative'), '--json'],
                                     capture_output=True, text=True, check=True).stdout
                hs.append(json.loads(out)['hr10'])
            print('ncf %s e=%.2f HR@10 %.4f (seeds %s)' % (mode, e, np.mean(hs), ' '.join('%.4f' % h for h in hs)),
                  flush=True)
    os.unlink(tmp)


def glove(data):
    W = np.load(os.path.join(data, 'glove', 'glove100d_top20k.npy')).astype(np.float64)
    rng = np.random.default_rng(0)
    q = np.sort(rng.choice(len(W), 200, replace=False))

    def top10(X):
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        S = Xn[q] @ Xn.T
        S[np.arange(len(q)), q] = -np.inf
        return np.argpartition(-S, 10, axis=1)[:, :10]

    ref = top10(W)
    for mode in ('row', 'iso'):
        for e in ES:
            got = top10(W + noise(W, e, mode, rng))
            rec = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ref, got)])
            print('glove %s e=%.2f recall@10 %.3f' % (mode, e, rec), flush=True)


if __name__ == '__main__':
    if len(sys.argv) >= 4 and sys.argv[1] == 'ncf':
        ncf(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 3 and sys.argv[1] == 'glove':
        glove(sys.argv[2])
    else:
        sys.exit(__doc__)
