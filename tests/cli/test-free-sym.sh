# Format extension free-sym/1: the free coordinates' E stored as symmetric int4/int8 rows,
# one F16 scale a row and no bias (int4-sym: ceil(c/2) + 2 bytes a row). fpd-compress
# --free-dtype int4-sym writes it (sizes as stored, the error of the file), fpd-inspect
# reads it, the bytes decode by the README's layout in NumPy here (independently of
# libfpd) to the rows fpd-convert writes dense, fpd-convert --free-dtype moves E between
# int4, int4-sym and core, and fpd-suggest sizes E so.
C="$BUILD/fpd-compress"
G="$ROOT/samples/glove-10k.safetensors"
T=word_embeddings.weight
V="$BUILD/fpd-convert"

run "$C" "$G" -o s.safetensors --rank 8 --epochs 0 --als 0 --free-coords 8 --free-dtype int4-sym --queries 0 --json
expect_rc "compress --free-dtype int4-sym: exit 0" 0
cp out.txt s.json
run "$C" "$G" -o f.safetensors --rank 8 --epochs 0 --als 0 --free-coords 8 --queries 0 --json
expect_rc "compress --free-coords 8 (F32 E): exit 0" 0
cp out.txt f.json
py_check "compress --free-dtype int4-sym: E counted as ceil(c/2) + 2 bytes a row, cores unchanged, error a little above F32 E" "
import json
s = json.load(open('s.json'))['tables'][0]; f = json.load(open('f.json'))['tables'][0]
assert s['free_dtype'] == 'int4-sym', s['free_dtype']
assert s['free_bytes'] == 10000 * (8 // 2 + 2) + 8 * 100 * 4, s['free_bytes']
assert s['bytes_after'] == f['bytes_after'] - f['free_bytes'] + s['free_bytes'], (s['bytes_after'], f['bytes_after'])
assert f['rel_error'] < s['rel_error'] < f['rel_error'] * 1.01, (f['rel_error'], s['rel_error'])"
run "$BUILD/fpd-inspect" s.safetensors --verify
expect_rc "int4-sym E: inspect --verify passes" 0
expect_grep "int4-sym E: inspect names E's dtype" out.txt "free coordinates c = 8 \(E \[10000, 8\] int4-sym, P \[8, 100\]\)"
run "$V" s.safetensors -o sd.safetensors
expect_rc "int4-sym E: fpd-convert to dense" 0
# independent decoder: codes (nibble - 8, even column low), F16 scale after them;
# row = cores' TT contraction (core m: [terms, n_m, r_m, d_m, r_m+1]) + E P in float64
py_check "int4-sym E: decoded here from the bytes, rows = fpd-convert's dense rows; the report's error is the file's" "
import json, struct
import numpy as np
d = open('s.safetensors', 'rb').read(); n = struct.unpack('<Q', d[:8])[0]; h = json.loads(d[8:8 + n])
def ten(k, dt):
    a, b = h[k]['data_offsets']; return np.frombuffer(d[8 + n + a:8 + n + b], dt).reshape(h[k]['shape'])
m = h['__metadata__']; t = json.loads(m['fpd.table.$T'])
assert m['fpd.extensions'] == 'free/1,free-sym/1' and t['free_dtype'] == 'int4-sym' and t['free_coords'] == 8, m
B = ten('$T.fpd.free', np.uint8); assert h['$T.fpd.free']['dtype'] == 'U8' and B.shape == (10000, 6), B.shape
codes = np.empty((10000, 8)); codes[:, 0::2] = (B[:, :4] & 15).astype(int) - 8; codes[:, 1::2] = (B[:, :4] >> 4).astype(int) - 8
assert codes.min() >= -7 and codes.max() <= 7 and (np.abs(codes).max(axis=1) == 7).mean() > 0.99
scale = B[:, 4:6].copy().view('<f2').astype(np.float64)
E = codes * scale; P = ten('$T.fpd.free_proj', '<f4').astype(np.float64)
cores = [ten(f'$T.fpd.core{i}', '<f4').astype(np.float64) for i in range(3)]
rs, cs = t['row_shape'], t['col_shape']
ids = np.arange(10000); i0, i1, i2 = ids // (rs[1] * rs[2]), ids // rs[2] % rs[1], ids % rs[2]
R = np.einsum('nia,najb,nbk->nijk', cores[0][0][i0][:, 0], cores[1][0][i1], cores[2][0][i2][..., 0]).reshape(10000, 100) + E @ P
def dense(p):
    d = open(p, 'rb').read(); n = struct.unpack('<Q', d[:8])[0]; h = json.loads(d[8:8 + n])
    a, b = h['$T']['data_offsets']
    return np.frombuffer(d[8 + n + a:8 + n + b], '<f4').reshape(h['$T']['shape']).astype(np.float64)
D, W = dense('sd.safetensors'), dense('$G')
assert np.abs(R - D).max() < 1e-5 * np.abs(D).max(), np.abs(R - D).max()
rel = np.linalg.norm(W - R) / np.linalg.norm(W)
s = json.load(open('s.json'))['tables'][0]
assert abs(rel - s['rel_error']) < 1e-5 * rel, (rel, s['rel_error'])"

# fpd-convert --free-dtype: F32 E -> int4-sym is compress's file byte for byte; int4 ->
# int4-sym lists free-sym/1 instead of free-rowwise/1; int4-sym -> core stores the decoded E
run "$V" f.safetensors --to fpd --free-dtype int4-sym -o f2s.safetensors
expect_rc "convert --free-dtype int4-sym: exit 0" 0
py_check "convert --free-dtype int4-sym: E's bytes = compress --free-dtype int4-sym's; extension list" "
import json, struct
def rd(p):
    d = open(p, 'rb').read(); n = struct.unpack('<Q', d[:8])[0]; h = json.loads(d[8:8 + n])
    return {k: d[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]] for k, v in h.items() if k != '__metadata__'}, h
a, ha = rd('f2s.safetensors'); b, hb = rd('s.safetensors')
assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), [k for k in a if a[k] != b.get(k)]
assert ha['__metadata__']['fpd.extensions'] == 'free/1,free-sym/1', ha['__metadata__']"
run "$C" "$G" -o q4.safetensors --rank 8 --epochs 0 --als 0 --free-coords 8 --free-dtype int4 --queries 0
run "$V" q4.safetensors --to fpd --free-dtype int4-sym -o q2s.safetensors
expect_rc "convert int4 -> int4-sym: exit 0" 0
run "$V" s.safetensors --to fpd --free-dtype core -o s2f.safetensors
expect_rc "convert int4-sym -> core: exit 0" 0
py_check "convert: int4 -> int4-sym lists free-sym/1 only; int4-sym -> core gives the decoded E in F32" "
import json, struct
import numpy as np
def rd(p):
    d = open(p, 'rb').read(); n = struct.unpack('<Q', d[:8])[0]; return d, n, json.loads(d[8:8 + n])
d, n, h = rd('q2s.safetensors')
assert h['__metadata__']['fpd.extensions'] == 'free/1,free-sym/1', h['__metadata__']
d, n, h = rd('s2f.safetensors')
assert h['__metadata__']['fpd.extensions'] == 'free/1' and h['$T.fpd.free']['dtype'] == 'F32', h['__metadata__']
a, b = h['$T.fpd.free']['data_offsets']; F = np.frombuffer(d[8 + n + a:8 + n + b], '<f4').reshape(10000, 8)
d, n, h = rd('s.safetensors'); a, b = h['$T.fpd.free']['data_offsets']
B = np.frombuffer(d[8 + n + a:8 + n + b], np.uint8).reshape(10000, 6)
codes = np.empty((10000, 8)); codes[:, 0::2] = (B[:, :4] & 15).astype(int) - 8; codes[:, 1::2] = (B[:, :4] >> 4).astype(int) - 8
E = (codes * B[:, 4:6].copy().view('<f2').astype(np.float32)).astype(np.float32)
assert np.array_equal(F, E), np.abs(F - E).max()"

# fpd-suggest sizes E as int4-sym rows: cores (F32) + N (ceil(c/2) + 2) + 4 c D, and
# compress --free-coords auto writes that pick, with at least int4's c
run "$BUILD/fpd-suggest" "$G" --budget 150KB --free-coords auto --free-dtype int4-sym --json
expect_rc "suggest --free-coords auto --free-dtype int4-sym: exit 0" 0
cp out.txt ss.json
run "$BUILD/fpd-suggest" "$G" --budget 150KB --free-coords auto --free-dtype int4 --json
cp out.txt s4.json
run "$C" "$G" -o as.safetensors --budget 150KB --free-coords auto --free-dtype int4-sym --queries 0 --json
expect_rc "compress --free-coords auto --free-dtype int4-sym: exit 0" 0
py_check "auto + int4-sym E: suggest's bytes by the formula, compress writes the pick" "
import json, math
s = json.load(open('ss.json'))['tables'][0]['selected']; q = json.load(open('s4.json'))['tables'][0]['selected']
t = json.load(open('out.txt'))['tables'][0]
c, r = s['free_coords'], s['r']
cores = 4 * (25 * 5 * r + r * 20 * 4 * r + r * 20 * 5)
assert s['k'] == 3 and s['bytes'] == cores + 10000 * (math.ceil(c / 2) + 2) + 4 * c * 100 <= 150000, (s, cores)
assert (t['r'], t['free_coords'], t['bytes_after'], t['free_dtype']) == (r, c, s['bytes'], 'int4-sym'), (t, s)
assert c >= q['free_coords'], (c, q['free_coords'])"
run "$C" "$G" -o bad.safetensors --free-dtype int4-col --free-coords 2
expect_rc "compress --free-dtype int4-col: exit 2" 2
expect_grep "compress --free-dtype int4-col: names the values" err.txt "core, int8, int4, int8-sym or int4-sym"
expect_absent "compress --free-dtype int4-col: nothing written" bad.safetensors
run "$BUILD/fpd-suggest" "$G" --free-dtype int4-sym
expect_rc "suggest --free-dtype without --free-coords: exit 2 (as fpd-compress)" 2
expect_grep "suggest --free-dtype without --free-coords: says so" err.txt "give --free-coords C"
