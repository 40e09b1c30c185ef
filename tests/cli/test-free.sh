# Format extension free/1 (free coordinates per row): fpd-inspect reports them and
# counts their bytes, fpd-convert's dense output includes E P, malformed tables are
# refused. The checkpoints are written here with NumPy from the README's layout.
I="$BUILD/fpd-inspect"
if ! have_python_numpy; then
    skip "free/1 checkpoints" "python3 with numpy not available"
else
"$BUILD/fpd-compress" "$ROOT/samples/glove-10k.safetensors" -o fpd.safetensors --rank 4 --epochs 0 -q
python3 -c "
import json, struct
import numpy as np
d = open('fpd.safetensors', 'rb').read(); n = struct.unpack('<Q', d[:8])[0]; h = json.loads(d[8:8 + n]); body = d[8 + n:]
T = 'word_embeddings.weight'
rng = np.random.default_rng(1)
E = rng.standard_normal((10000, 2)).astype('<f4'); P = rng.standard_normal((2, 100)).astype('<f4')
np.save('E.npy', E); np.save('P.npy', P)
def save(name, hdr, extra):
    b = json.dumps(hdr).encode(); b += b' ' * (-len(b) % 8)
    open(name, 'wb').write(struct.pack('<Q', len(b)) + b + body + extra)
def with_free(drop_ext=False, proj_shape=(2, 100), free_coords=2):
    m = json.loads(json.dumps(h)); off = len(body)
    m[T + '.fpd.free'] = {'dtype': 'F32', 'shape': [10000, 2], 'data_offsets': [off, off + E.nbytes]}
    m[T + '.fpd.free_proj'] = {'dtype': 'F32', 'shape': list(proj_shape), 'data_offsets': [off + E.nbytes, off + E.nbytes + P.nbytes]}
    t = json.loads(m['__metadata__']['fpd.table.' + T]); t['free_coords'] = free_coords
    m['__metadata__']['fpd.table.' + T] = json.dumps(t)
    if not drop_ext: m['__metadata__']['fpd.extensions'] = 'free/1'
    return m
save('free.safetensors', with_free(), E.tobytes() + P.tobytes())
save('noext.safetensors', with_free(drop_ext=True), E.tobytes() + P.tobytes())
save('badproj.safetensors', with_free(proj_shape=(4, 50)), E.tobytes() + P.tobytes())
m = with_free(); m['__metadata__']['fpd.extensions'] = 'free/9'; save('future.safetensors', m, E.tobytes() + P.tobytes())"

run "$I" free.safetensors
expect_rc "free/1: inspect exits 0" 0
expect_grep "free/1: inspect names c and the shapes" out.txt "free coordinates c = 2 \(E \[10000, 2\], P \[2, 100\]\)"
cp out.txt text.txt
run "$I" free.safetensors --json
expect_rc "free/1 json: exit 0" 0
py_check "free/1 json: free_coords and the bytes of E and P counted in the table" "
import json; r = json.load(open('out.txt')); t = r['tables'][0]
cores = sum(x['bytes'] for x in r['tensors'] if '.fpd.core' in x['name'])
assert t['free_coords'] == 2, t
assert t['bytes_after'] == cores + 10000 * 2 * 4 + 2 * 100 * 4, (t['bytes_after'], cores)"
run "$I" free.safetensors --verify
expect_rc "free/1: --verify passes" 0

run "$I" noext.safetensors
expect_rc "free/1 undeclared: exit 1" 1
expect_grep "free/1 undeclared: says so" err.txt "does not list 'free/1'"
run "$I" badproj.safetensors
expect_rc "free/1 bad P shape: exit 1" 1
expect_grep "free/1 bad P shape: names the tensor and shapes" err.txt "'word_embeddings.weight.fpd.free_proj' has shape \[4, 50\]"
run "$I" future.safetensors
expect_rc "free/9: exit 1" 1
expect_grep "free/9: names the unknown extension" err.txt "names the extension 'free/9'"

# fpd-convert to dense: the rows include E P (checked against the cores + E P in NumPy)
run "$BUILD/fpd-convert" free.safetensors -o dense.safetensors
expect_rc "free/1: convert to dense exits 0" 0
run "$BUILD/fpd-convert" fpd.safetensors -o dense0.safetensors
py_check "free/1: dense rows = FPD rows + E P" "
import json, struct
import numpy as np
def load(p):
    d = open(p, 'rb').read(); n = struct.unpack('<Q', d[:8])[0]; h = json.loads(d[8:8 + n])
    t = h['word_embeddings.weight']; a, b = t['data_offsets']
    return np.frombuffer(d[8 + n + a:8 + n + b], '<f4').reshape(t['shape'])
W, W0 = load('dense.safetensors'), load('dense0.safetensors')
E, P = np.load('E.npy'), np.load('P.npy')
err = np.abs(W - (W0 + E.astype(np.float64) @ P)).max()
assert err < 1e-4 * np.abs(W).max(), err"
fi
if have_python_numpy; then
    run "$BUILD/fpd-convert" free.safetensors --to ttrec -o tt.safetensors
    expect_rc "free/1 to ttrec: exit 1" 1
    expect_grep "free/1 to ttrec: refused by name" err.txt "has 2 free coordinates per row \(free/1\); the TT-Rec layout has none"
fi

# fpd-compress on a checkpoint whose FPD tables carry free coordinates (written by the
# sample trainer): the tables pass through whole (E and P are not tables of their own),
# fpd.extensions keeps free/1, and the output verifies
if [ -f "$DATA/movielens-1m/ratings.tsv" ]; then
    run "$BUILD/sample-train-gmf" "$DATA/movielens-1m/ratings.tsv" --epochs 1 --max-users 200 --dim 16 --rank 4 \
        --tables fpd --free-coords 2 -o fc
    expect_rc "compress free/1 input: the trainer writes it" 0
    run "$BUILD/fpd-compress" fc.fpd.safetensors -o fc-out.safetensors --json
    expect_rc "compress free/1 input: exit 0" 0
    expect_no_grep "compress free/1 input: E and P are not listed as tables" out.txt '"name": "[a-z_.]*\.fpd\.free'
    run "$BUILD/fpd-inspect" fc-out.safetensors --verify
    expect_rc "compress free/1 input: the output verifies" 0
    expect_grep "compress free/1 input: free coordinates kept" out.txt "free coordinates c = 2"
else
    skip "compress free/1 input" "$DATA/movielens-1m/ratings.tsv not found"
fi

# fpd-compress --free-coords C: every FPD table gets C free coordinates (free/1), fitted
# to the residual's top C directions; the output verifies, fpd-inspect shows them, the
# sizes count N C + C D values, the error is below the C = 0 run's and is what NumPy
# measures on fpd-convert's dense rows and on the Python loader's layer
C="$BUILD/fpd-compress"
G="$ROOT/samples/glove-10k.safetensors"
run "$C" "$G" -o fc0.safetensors --rank 8 --epochs 0 --als 0 --json
expect_rc "compress --free-coords 0: exit 0" 0
cp out.txt fc0.json
run "$C" "$G" -o fc2.safetensors --rank 8 --epochs 0 --als 0 --free-coords 2 --json
expect_rc "compress --free-coords 2: exit 0" 0
cp out.txt fc2.json
py_check "compress --free-coords 2: report fields, sizes counted, error below c = 0" "
import json
t0 = json.load(open('fc0.json'))['tables'][0]; t2 = json.load(open('fc2.json'))['tables'][0]
assert t2['free_coords'] == 2 and t0['free_coords'] == 0, (t0, t2)
assert t2['free_params'] == 10000 * 2 + 2 * 100 and t2['free_bytes'] == 4 * t2['free_params'], t2
assert t2['bytes_after'] == t0['bytes_after'] + t2['free_bytes'], (t0['bytes_after'], t2['bytes_after'])
assert t2['params'] == t0['params'] + t2['free_params']
assert abs(t2['ratio'] / (4000000 / t2['bytes_after']) - 1) < 1e-5
assert t2['rel_error'] < t0['rel_error'], (t2['rel_error'], t0['rel_error'])
assert abs(t2['rel_error_without_free'] - t0['rel_error']) < 2e-6
assert t2['fit'] == 'tt-svd+free', t2['fit']"
run "$BUILD/fpd-inspect" fc2.safetensors --verify
expect_rc "compress --free-coords 2: the output verifies" 0
expect_grep "compress --free-coords 2: inspect shows them" out.txt "free coordinates c = 2 \(E \[10000, 2\], P \[2, 100\]\)"
run "$BUILD/fpd-inspect" fc2.safetensors --json
py_check "compress --free-coords 2: inspect's table size = compress's bytes_after" "
import json
t = json.load(open('out.txt'))['tables'][0]; t2 = json.load(open('fc2.json'))['tables'][0]
assert t['bytes_after'] == t2['bytes_after'] and t['free_coords'] == 2, (t, t2['bytes_after'])"
run "$C" "$G" -o fc2.safetensors --rank 8 --epochs 0 --als 0 --free-coords 2 -f
expect_grep "compress --free-coords 2: the text report names E, P and the error without them" out.txt \
    "free coordinates c = 2: E \[10000, 2\] \(F32\) \+ P \[2, 100\] \(F32\) = 20200 values, 78.91 KiB \(in 'after'\); rel.err without them 0\.[0-9]"
run "$BUILD/fpd-convert" fc2.safetensors -o fc2-dense.safetensors
expect_rc "compress --free-coords 2: fpd-convert to dense" 0
py_check "compress --free-coords 2: dense rows of fpd-convert have the reported error" "
import json, struct
import numpy as np
def load(p, name):
    d = open(p, 'rb').read(); n = struct.unpack('<Q', d[:8])[0]; h = json.loads(d[8:8 + n])
    t = h[name]; a, b = t['data_offsets']
    return np.frombuffer(d[8 + n + a:8 + n + b], '<f4').reshape(t['shape']).astype(np.float64)
T = 'word_embeddings.weight'
W, R = load('$G', T), load('fc2-dense.safetensors', T)
rel = np.linalg.norm(W - R) / np.linalg.norm(W)
t2 = json.load(open('fc2.json'))['tables'][0]
assert abs(rel - t2['rel_error']) < 1e-5 * rel, (rel, t2['rel_error'])"
if /usr/bin/python3 -c 'import numpy' >/dev/null 2>&1; then
    if FPD_LIBRARY="$BUILD/libfpd.so" PYTHONPATH="$ROOT/tools/python" /usr/bin/python3 -c "
import json, fpd
import numpy as np
T = 'word_embeddings.weight'
with fpd.open('fc2.safetensors') as ck:
    l = ck.load_layer(T)
    assert l.free_coords == 2 and l.free_e.shape == (10000, 2) and l.free_p.shape == (2, 100)
    R = l.reconstruct()
with fpd.open('$G') as src:
    W = src.tensor(T).astype(np.float64)
rel = np.linalg.norm(W - R) / np.linalg.norm(W)
assert abs(rel - json.load(open('fc2.json'))['tables'][0]['rel_error']) < 1e-5 * rel, rel
r = fpd.compress('$G', 'fc2py.safetensors', rank=8, epochs=0, als_sweeps=0, free_coords=2, queries=0)
assert r['tables'][0]['free_coords'] == 2 and r['tables'][0]['bytes_after'] == json.load(open('fc2.json'))['tables'][0]['bytes_after']
" >py.txt 2>&1; then _report ok "compress --free-coords 2: the Python loader reads E and P; fpd.compress(free_coords=2)"
    else _report "not ok" "compress --free-coords 2: the Python loader" "$(tail -c 600 py.txt)"; fi
else
    skip "compress --free-coords 2: the Python loader" "/usr/bin/python3 with numpy not available"
fi
run "$C" "$G" -o fc101.safetensors --rank 8 --free-coords 101
expect_rc "compress --free-coords above D: exit 2" 2
expect_grep "compress --free-coords above D: names the table and D" err.txt \
    "tensor 'word_embeddings.weight' has dimension 100; 101 free coordinates per row need at most that"
expect_absent "compress --free-coords above D: nothing written" fc101.safetensors
# the same under the default encoding (auto), which picks int8 for this table: C above D
# is still an error, not dropped with the FPD candidate
run "$C" "$G" -o fc101a.safetensors --free-coords 101
expect_rc "compress --free-coords above D, encoding auto: exit 2" 2
expect_grep "compress --free-coords above D, encoding auto: names the table and D" err.txt \
    "tensor 'word_embeddings.weight' has dimension 100; 101 free coordinates per row need at most that"
expect_absent "compress --free-coords above D, encoding auto: nothing written" fc101a.safetensors
# auto's reason names FPD's ratio with its free coordinates, the size it is compared at:
# c = 5 gives the 35.2x the FPD table written has, not the 320x of its cores alone
run "$C" "$G" -o fc5a.safetensors --free-coords 5 --max-error 0.9 --json
expect_rc "compress --free-coords 5, auto: exit 0" 0
py_plain "compress --free-coords 5, auto: the reason's FPD ratio is the written table's" "
import json, re
t = json.load(open('out.txt'))['tables'][0]
m = re.search(r'FPD r=\\d+ p=\\d+ c=5 ([0-9.]+)x', t['why'])
assert m and t['encoding'] == 'fpd' and abs(float(m.group(1)) - t['ratio']) < 0.05 * t['ratio'], (t['why'], t['ratio'])"
run "$C" "$G" -o fcbad.safetensors --free-coords -1
expect_rc "compress --free-coords -1: exit 2" 2
run "$C" "$G" -o fcbad.safetensors --free-coords two
expect_rc "compress --free-coords two: exit 2" 2
expect_grep "compress --free-coords two: names the option" err.txt "free-coords"
expect_absent "compress --free-coords bad values: nothing written" fcbad.safetensors

# --free-coords auto: the planner's c per table (fpd-suggest --free-coords auto's pick),
# the budget covering cores + free coordinates; refused without a target
run "$BUILD/fpd-suggest" "$G" --budget 150KB --free-coords auto --json
expect_rc "suggest --free-coords auto: exit 0" 0
cp out.txt fca-suggest.json
run "$C" "$G" -o fca.safetensors --budget 150KB --free-coords auto --queries 0 --json
expect_rc "compress --free-coords auto --budget: exit 0" 0
cp out.txt fca.json
py_check "compress --free-coords auto: fpd-suggest's (r, p, k, c) and bytes; the file's E [N, c]; error near the prediction" "
import json, struct
s = json.load(open('fca-suggest.json'))['tables'][0]['selected']; t = json.load(open('fca.json'))['tables'][0]
assert s['free_coords'] == 2 and s['r'] == 10, s  # GloVe 10k at 150 KB: r = 10, c = 2 beats the c = 0 pick
assert (t['r'], t['p'], t['k'], t['free_coords']) == (s['r'], s['p'], s['k'], s['free_coords']), (t, s)
assert t['row_shape'] == s['row_shape'] and t['col_shape'] == s['col_shape'], (t, s)
# the budget covers cores + E + P: cores (3 cores of rank 10) + c (N + D) F32 values
cores = 4 * (25 * 5 * 10 + 10 * 20 * 4 * 10 + 10 * 20 * 5)
assert t['bytes_after'] == s['bytes'] == cores + 4 * 2 * (10000 + 100) <= 150000, (t['bytes_after'], s['bytes'], cores)
d = open('fca.safetensors', 'rb').read(); n = struct.unpack('<Q', d[:8])[0]; h = json.loads(d[8:8 + n])
T = 'word_embeddings.weight'
assert h[T + '.fpd.free']['shape'] == [10000, 2] and h[T + '.fpd.free_proj']['shape'] == [2, 100], h
assert json.loads(h['__metadata__']['fpd.table.' + T])['free_coords'] == 2
# the prediction is the fit's first stage (TT-SVD + free coordinates); ALS and the
# finetune lower it a little: within 1% (measured 0.8525 fitted, 0.8534 predicted)
assert abs(t['rel_error'] / s['predicted_error'] - 1) < 0.01, (t['rel_error'], s['predicted_error'])"
# under --max-error (--encoding fpd): fpd-suggest's pick, the smallest predicted to meet it
run "$BUILD/fpd-suggest" "$G" --max-error 0.86 --free-coords auto --json
cp out.txt fcm-suggest.json
run "$C" "$G" -o fcm.safetensors --encoding fpd --max-error 0.86 --free-coords auto --queries 0 --json
expect_rc "compress --free-coords auto --max-error: exit 0" 0
py_check "compress --free-coords auto --max-error: fpd-suggest's (r, c) and bytes, the error near 0.86" "
import json
s = json.load(open('fcm-suggest.json'))['tables'][0]['selected']; t = json.load(open('out.txt'))['tables'][0]
assert s['free_coords'] > 0, s
assert (t['r'], t['p'], t['k'], t['free_coords'], t['bytes_after']) == (s['r'], s['p'], s['k'], s['free_coords'], s['bytes']), (t, s)
assert abs(t['rel_error'] / s['predicted_error'] - 1) < 0.01 and t['rel_error'] < 0.86 * 1.01, (t['rel_error'], s)"
run "$C" "$G" -o fca-none.safetensors --free-coords auto
expect_rc "compress --free-coords auto without a target: exit 2" 2
expect_grep "compress --free-coords auto without a target: says it needs one" err.txt \
    "free-coords auto needs a target .*--budget, --ratio or --max-error"
expect_absent "compress --free-coords auto without a target: nothing written" fca-none.safetensors
if /usr/bin/python3 -c 'import numpy' >/dev/null 2>&1; then
    if FPD_LIBRARY="$BUILD/libfpd.so" PYTHONPATH="$ROOT/tools/python" /usr/bin/python3 -c "
import json, fpd
r = fpd.compress('$G', 'fcapy.safetensors', budget=150000, free_coords='auto', queries=0)['tables'][0]
t = json.load(open('fca.json'))['tables'][0]
assert (r['r'], r['free_coords'], r['bytes_after']) == (t['r'], 2, t['bytes_after']), (r, t)
try:
    fpd.compress('$G', 'fcapy2.safetensors', free_coords='auto'); raise SystemExit('no error without a target')
except ValueError as e:
    assert 'needs a target' in str(e), e
" >py.txt 2>&1; then _report ok "compress --free-coords auto: fpd.compress(free_coords='auto') plans the same c; refused without a target"
    else _report "not ok" "compress --free-coords auto: fpd.compress(free_coords='auto')" "$(tail -c 600 py.txt)"; fi
else
    skip "compress --free-coords auto: fpd.compress" "/usr/bin/python3 with numpy not available"
fi
