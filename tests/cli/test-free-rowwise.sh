# Format extension free-rowwise/1: the free coordinates' E stored as int4/int8 rows.
# fpd-compress --free-dtype writes it (sizes as stored, the error of the file), fpd-inspect
# and fpd-convert read it, fpd-convert --free-dtype re-stores E, sample-train-gmf
# --free-dtype trains and writes it, and an independent NumPy decoder (samples/pytorch/
# fpd_embedding.py, FBGEMM's layout from the README) reads the same rows as libfpd.
C="$BUILD/fpd-compress"
G="$ROOT/samples/glove-10k.safetensors"
T=word_embeddings.weight
FE="$ROOT/samples/pytorch"

run "$C" "$G" -o q.safetensors --rank 8 --epochs 0 --als 0 --free-coords 8 --free-dtype int4 --queries 0 --json
expect_rc "compress --free-dtype int4: exit 0" 0
cp out.txt q.json
run "$C" "$G" -o f.safetensors --rank 8 --epochs 0 --als 0 --free-coords 8 --queries 0 --json
expect_rc "compress --free-coords 8 (F32 E): exit 0" 0
cp out.txt f.json
py_check "compress --free-dtype int4: E counted as int4 rows, the cores' bytes unchanged, error a little above F32 E" "
import json
q = json.load(open('q.json'))['tables'][0]; f = json.load(open('f.json'))['tables'][0]
assert q['free_dtype'] == 'int4' and f['free_dtype'] == 'F32', (q['free_dtype'], f['free_dtype'])
e4, p = 10000 * (8 // 2 + 4), 8 * 100 * 4
assert q['free_bytes'] == e4 + p and f['free_bytes'] == 10000 * 8 * 4 + p, (q['free_bytes'], f['free_bytes'])
assert q['bytes_after'] == f['bytes_after'] - f['free_bytes'] + q['free_bytes'], (q['bytes_after'], f['bytes_after'])
assert abs(q['ratio'] - 4000000 / q['bytes_after']) < 1e-3 * q['ratio'], q['ratio']
assert f['rel_error'] < q['rel_error'] < f['rel_error'] * 1.01, (f['rel_error'], q['rel_error'])"
run "$BUILD/fpd-inspect" q.safetensors --verify
expect_rc "int4 E: inspect --verify passes" 0
expect_grep "int4 E: inspect names E's dtype" out.txt "free coordinates c = 8 \(E \[10000, 8\] int4, P \[8, 100\]\)"
run "$BUILD/fpd-inspect" q.safetensors --json
py_check "int4 E: inspect's JSON (free_dtype, the table's bytes = compress's)" "
import json
t = json.load(open('out.txt'))['tables'][0]; q = json.load(open('q.json'))['tables'][0]
assert t['free_dtype'] == 'int4' and t['free_coords'] == 8 and t['bytes_after'] == q['bytes_after'], t"
run "$BUILD/fpd-convert" q.safetensors -o qd.safetensors
expect_rc "int4 E: fpd-convert to dense" 0
# the independent reader: E decoded from the bytes by the README's layout, rows by the
# definition (cores + E P) in float64; equal to libfpd's dense rows and to the report's error
py_check "int4 E: the NumPy reader's rows = fpd-convert's dense rows; the report's error is the file's" "
import sys, json, struct
sys.path.insert(0, '$FE')
import numpy as np, fpd_embedding as fe
t = fe.load_fpd_table('q.safetensors', '$T')
assert t.free_e.shape == (10000, 8) and t.meta['free_dtype'] == 'int4'
R = fe.reconstruct_rows(t, np.arange(10000))
def load(p):
    d = open(p, 'rb').read(); n = struct.unpack('<Q', d[:8])[0]; h = json.loads(d[8:8 + n])
    a, b = h['$T']['data_offsets']
    return np.frombuffer(d[8 + n + a:8 + n + b], '<f4').reshape(h['$T']['shape']).astype(np.float64)
D, W = load('qd.safetensors'), load('$G')
assert np.abs(R - D).max() < 1e-5 * np.abs(D).max(), np.abs(R - D).max()
rel = np.linalg.norm(W - R) / np.linalg.norm(W)
q = json.load(open('q.json'))['tables'][0]
assert abs(rel - q['rel_error']) < 1e-5 * rel, (rel, q['rel_error'])"

run "$C" "$G" -o bad.safetensors --free-dtype int4
expect_rc "compress --free-dtype without --free-coords: exit 2" 2
expect_grep "compress --free-dtype without --free-coords: says so" err.txt "give --free-coords C"
# --free-coords auto --free-dtype int4: the planner sizes E as int4 rows (fpd-suggest
# --free-dtype int4 gives the same pick and bytes, to the byte, by the formula cores (F32)
# + N (ceil(c/2) + 4) + 4 c D); the budget then buys more free coordinates than in F32
run "$BUILD/fpd-suggest" "$G" --budget 150KB --free-coords auto --free-dtype int4 --json
expect_rc "suggest --free-coords auto --free-dtype int4: exit 0" 0
cp out.txt sa4.json
run "$BUILD/fpd-suggest" "$G" --budget 150KB --free-coords auto --json
cp out.txt sa32.json
run "$C" "$G" -o a4.safetensors --budget 150KB --free-coords auto --free-dtype int4 --queries 0 --json
expect_rc "compress --free-coords auto --free-dtype int4: exit 0" 0
cp out.txt a4.json
py_check "auto + int4 E: suggest's pick and bytes (by the formula), compress writes them, error near the prediction, more c than F32" "
import json, math
s = json.load(open('sa4.json'))['tables'][0]['selected']; f = json.load(open('sa32.json'))['tables'][0]['selected']
t = json.load(open('out.txt'))['tables'][0]
c, r = s['free_coords'], s['r']
cores = 4 * (25 * 5 * r + r * 20 * 4 * r + r * 20 * 5)  # k = 3: 25x20x20 rows, 5x4x5 columns, F32
assert s['k'] == 3 and s['row_shape'] == [25, 20, 20] and s['col_shape'] == [5, 4, 5], s
assert s['bytes'] == cores + 10000 * (math.ceil(c / 2) + 4) + 4 * c * 100 <= 150000, (s['bytes'], cores, c)
assert (t['r'], t['free_coords'], t['bytes_after'], t['free_dtype']) == (r, c, s['bytes'], 'int4'), (t, s)
assert abs(t['rel_error'] / s['predicted_error'] - 1) < 0.01, (t['rel_error'], s['predicted_error'])
assert c > f['free_coords'] and s['predicted_error'] < f['predicted_error'], (s, f)"
run "$C" "$G" -o bad.safetensors --free-dtype int2 --free-coords 2
expect_rc "compress --free-dtype int2: exit 2" 2
expect_grep "compress --free-dtype int2: names the values" err.txt "core, int8, int4, int8-sym or int4-sym"
run "$C" "$G" -o bad.safetensors --encoding int4 --free-coords 8 --free-dtype int4
expect_rc "compress --encoding int4 with free coordinates: exit 2" 2
expect_grep "compress --encoding int4 with free coordinates: says why" err.txt "--encoding int4 writes no FPD table"
expect_absent "compress --free-dtype refusals: nothing written" bad.safetensors

# fpd-convert --free-dtype: F32 E -> int4 gives compress's bytes for E; int4 -> core
# gives F32 E = the decoded int4 values; the extension list follows
V="$BUILD/fpd-convert"
run "$V" f.safetensors --to fpd --free-dtype int4 -o f2q.safetensors --json
expect_rc "convert --free-dtype int4: exit 0" 0
py_check "convert --free-dtype int4: E's bytes = compress --free-dtype's; cores and P unchanged; rel_error null" "
import json, struct
def rd(p):
    d = open(p, 'rb').read(); n = struct.unpack('<Q', d[:8])[0]; h = json.loads(d[8:8 + n])
    return {k: d[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]] for k, v in h.items() if k != '__metadata__'}, h
a, ha = rd('f2q.safetensors'); b, hb = rd('q.safetensors'); f, hf = rd('f.safetensors')
assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), [k for k in a if a[k] != b.get(k)]
assert all(a[k] == f[k] for k in a if not k.endswith('.fpd.free')), 'cores or P changed'
m = ha['__metadata__']; t = json.loads(m['fpd.table.$T'])
assert m['fpd.extensions'] == 'free/1,free-rowwise/1' and t['free_dtype'] == 'int4' and t['rel_error'] is None, m
r = json.load(open('out.txt'))
assert [x['from'] for x in r['tensors'] if x['name'].endswith('.fpd.free')] == ['E stored as int4'], r"
run "$V" q.safetensors --to fpd --free-dtype core -o q2f.safetensors
expect_rc "convert --free-dtype core: exit 0" 0
py_check "convert --free-dtype core: F32 E = the NumPy-decoded int4 E; free-rowwise/1 dropped" "
import sys, json, struct
sys.path.insert(0, '$FE')
import numpy as np, fpd_embedding as fe
d = open('q2f.safetensors', 'rb').read(); n = struct.unpack('<Q', d[:8])[0]; h = json.loads(d[8:8 + n])
e = h['$T.fpd.free']; a, b = e['data_offsets']
E = np.frombuffer(d[8 + n + a:8 + n + b], '<f4').reshape(e['shape'])
assert e['dtype'] == 'F32' and h['__metadata__']['fpd.extensions'] == 'free/1', h['__metadata__']
assert 'free_dtype' not in json.loads(h['__metadata__']['fpd.table.$T'])
assert np.array_equal(E, fe.load_fpd_table('q.safetensors').free_e)"
run "$V" "$G" --to fpd --free-dtype int4 -o none.safetensors
expect_rc "convert --free-dtype on a dense checkpoint: exit 1" 1
run "$C" "$G" -o plain.safetensors --rank 4 --epochs 0 -q
run "$V" plain.safetensors --to fpd --free-dtype int4 -o none.safetensors
expect_rc "convert --free-dtype without free coordinates: exit 1" 1
expect_grep "convert --free-dtype without free coordinates: says so" err.txt "no FPD table with free coordinates"
expect_absent "convert --free-dtype refusals: nothing written" none.safetensors
run "$V" q.safetensors --free-dtype int4 -o x.safetensors
expect_rc "convert --free-dtype without --to fpd: exit 2" 2

# a reader that knows free/1 only (an older libfpd) must refuse through fpd.extensions:
# shown with the NumPy reader, which refuses an extension it does not know
py_check "int4 E: an unknown extension is refused by the NumPy reader" "
import sys, json, struct
sys.path.insert(0, '$FE')
import fpd_embedding as fe
d = open('q.safetensors', 'rb').read(); n = struct.unpack('<Q', d[:8])[0]; h = json.loads(d[8:8 + n])
h['__metadata__']['fpd.extensions'] = 'free/1,free-rowwise/2'
b = json.dumps(h).encode(); b += b' ' * (-len(b) % 8)
open('future.safetensors', 'wb').write(struct.pack('<Q', len(b)) + b + d[8 + n:])
try:
    fe.load_fpd_table('future.safetensors'); raise SystemExit('read a file with an unknown extension')
except ValueError as e:
    assert 'free-rowwise/2' in str(e), e"
run "$BUILD/fpd-inspect" future.safetensors
expect_rc "int4 E, free-rowwise/2: libfpd refuses (exit 1)" 1
expect_grep "int4 E, free-rowwise/2: names the extension" err.txt "names the extension 'free-rowwise/2'"

# the Python package: fpd.compress(free_dtype=), Layer.quantize_free, fpd.save(free_dtype=)
if /usr/bin/python3 -c 'import numpy' >/dev/null 2>&1; then
    if FPD_LIBRARY="$BUILD/libfpd.so" PYTHONPATH="$ROOT/tools/python" /usr/bin/python3 -c "
import json, fpd
import numpy as np
r = fpd.compress('$G', 'qpy.safetensors', rank=8, epochs=0, als_sweeps=0, free_coords=8, free_dtype='int4', queries=0)
q = json.load(open('q.json'))['tables'][0]
assert r['tables'][0]['bytes_after'] == q['bytes_after'] and abs(r['tables'][0]['rel_error'] / q['rel_error'] - 1) < 1e-5  # the CLI prints 6 digits
with fpd.open('f.safetensors') as ck:
    l = ck.load_layer('$T')
with fpd.open('q.safetensors') as ck:
    info = ck.table_info('$T'); lq = ck.load_layer('$T')
assert info['free_coords'] == 8 and info['free_dtype'] == 'int4' and not info['vocabulary_order'], info
with fpd.open('f.safetensors') as ck:
    assert ck.table_info('$T')['free_dtype'] == 'F32', ck.table_info('$T')  # E in the core dtype
r2 = fpd.compress('$G', 'qpy-core.safetensors', rank=8, epochs=0, als_sweeps=0, free_coords=8, free_dtype='core', queries=0)
assert r2['tables'][0]['free_dtype'] == 'F32', r2['tables'][0]['free_dtype']
l.quantize_free('int4')
assert np.array_equal(l.free_e, lq.free_e)
fpd.save('pysave.safetensors', {'$T': l}, free_dtype='int4')
with fpd.open('pysave.safetensors') as ck:
    assert ck.table_info('$T')['free_dtype'] == 'int4'
    assert np.array_equal(ck.load_layer('$T').free_e, lq.free_e)
ra = fpd.compress('$G', 'qpy2.safetensors', free_coords='auto', budget=150000, free_dtype='int4', queries=0)
assert ra['tables'][0]['bytes_after'] == json.load(open('a4.json'))['tables'][0]['bytes_after'], ra['tables'][0]
assert ra['tables'][0]['free_dtype'] == 'int4' and ra['tables'][0]['bytes_after'] <= 150000, ra['tables'][0]
try:
    fpd.compress('$G', 'qpy3.safetensors', free_coords=0, free_dtype='int4'); raise SystemExit('c = 0')
except ValueError as e:
    assert 'free_coords' in str(e), e
" >py.txt 2>&1; then _report ok "int4 E from Python: fpd.compress(free_dtype), Layer.quantize_free = the file's E, fpd.save(free_dtype)"
    else _report "not ok" "int4 E from Python" "$(tail -c 600 py.txt)"; fi
else
    skip "int4 E from Python" "/usr/bin/python3 with numpy not available"
fi

# sample-train-gmf --free-dtype int4: trained in F32, E rounded once; the HR@10 it prints
# for the stored model is what fpd-eval measures on the file it wrote
if [ -f "$DATA/movielens-1m/ratings.tsv" ]; then
    run "$BUILD/sample-train-gmf" "$DATA/movielens-1m/ratings.tsv" --epochs 1 --max-users 200 --dim 16 --rank 4 \
        --tables fpd --free-coords 4 --free-dtype int4 --order-rows -o tq --write-test --json
    expect_rc "train --free-dtype int4: exit 0" 0
    cp out.txt tq.json
    expect_grep "train --free-dtype int4: prints the stored and the F32 metrics" err.txt "E stored as int4: HR@10 0\.[0-9]* .*\(F32 0\."
    run "$BUILD/fpd-eval" tq.fpd.safetensors --ncf tq.test.rating tq.test.negative --json
    expect_rc "train --free-dtype int4: fpd-eval reads the file" 0
    py_check "train --free-dtype int4: fpd-eval's HR@10 = the trainer's stored HR@10; the ratio counts E's bytes" "
import json
top = json.load(open('tq.json')); r = top['runs'][0]; e = json.load(open('out.txt'))
assert top['free_coords'] == 4 and top['free_dtype'] == 'int4', (top['free_coords'], top['free_dtype'])
hr = e.get('hr10', e.get('HR@10'))
assert abs(hr - r['hr10']) < 1e-6, (hr, r['hr10'], r['hr10_f32'])
assert r['hr10_f32'] is not None
# the trainer's parameters are the file's bytes / 4: the FPD tensors (cores, row_perm, E as
# int4 rows of 2 + 4 bytes, P) and the prediction layer's D + 1 floats
fpd_bytes = sum(t['bytes'] for t in e['tables'])
assert 4 * r['params'] == fpd_bytes + 4 * (16 + 1), (r['params'], fpd_bytes)"
    run "$BUILD/fpd-inspect" tq.fpd.safetensors
    expect_grep "train --free-dtype int4: both tables store int4 E" out.txt "E \[3706, 4\] int4"
    run "$BUILD/sample-train-gmf" "$DATA/movielens-1m/ratings.tsv" --epochs 1 --max-users 50 --free-dtype int4
    expect_rc "train --free-dtype without --free-coords: exit 2" 2
    # the order in the id vocabulary with int4 E: fpd-convert --vocabulary-out --free-dtype
    # int4 folds the trainer's row_perm; fpd-eval --vocabulary MAP then measures the same
    # HR@10 as on the unfolded file (rows equal to F32 rounding; E is already int4)
    run "$BUILD/fpd-convert" tq.fpd.safetensors --to fpd --vocabulary-out tq.map --free-dtype int4 -o tqv.safetensors
    expect_rc "fold with int4 E: exit 0" 0
    run "$BUILD/fpd-inspect" tqv.safetensors
    expect_grep "fold with int4 E: inspect says where the order lives" out.txt "int4, P \[4, 16\]\), row order in an id vocabulary"
    run "$BUILD/fpd-eval" tqv.safetensors --ncf tq.test.rating tq.test.negative --vocabulary tq.map --json
    expect_rc "fpd-eval --vocabulary: exit 0" 0
    cp out.txt tqv.json
    run "$BUILD/fpd-eval" tq.fpd.safetensors --ncf tq.test.rating tq.test.negative --json
    py_check "fpd-eval --vocabulary: the HR@10 and NDCG@10 of the unfolded file; the sizes those of the folded one" "
import json
v = json.load(open('tqv.json')); o = json.load(open('out.txt'))
assert abs(v['hr10'] - o['hr10']) < 1e-9 and abs(v['ndcg10'] - o['ndcg10']) < 1e-6, (v['hr10'], o['hr10'])
assert v['vocabulary'] == 'tq.map'
# the folded file has no row_perm: 4 bytes a row fewer
for a, b in zip(v['tables'], o['tables']):
    assert b['bytes'] - a['bytes'] >= 4 * b['rows'] - 4 * 64, (a, b)"
    run "$BUILD/fpd-eval" tqv.safetensors --ncf tq.test.rating tq.test.negative
    expect_rc "fpd-eval of a folded file without its map: exit 0 (its ids may have been mapped)" 0
    expect_grep "fpd-eval of a folded file without its map: warns" err.txt "row order in an id vocabulary .*give --vocabulary MAP"
    printf 'user\tid\trow\n' >bad.map
    run "$BUILD/fpd-eval" tqv.safetensors --ncf tq.test.rating tq.test.negative --vocabulary bad.map
    expect_rc "fpd-eval --vocabulary, not a map: exit 1" 1
    expect_grep "fpd-eval --vocabulary, not a map: names the file and line" err.txt "bad.map:1: not a vocabulary map"
    head -3 tq.map >short.map
    run "$BUILD/fpd-eval" tqv.safetensors --ncf tq.test.rating tq.test.negative --vocabulary short.map
    expect_rc "fpd-eval --vocabulary, a short map: exit 1" 1
    expect_grep "fpd-eval --vocabulary, a short map: the test ids outside it" err.txt "item id [0-9]* .entry [0-9]*. is outside .0, 2."
    { head -2 tq.map; sed -n 2p tq.map; } >dup.map
    run "$BUILD/fpd-eval" tqv.safetensors --ncf tq.test.rating tq.test.negative --vocabulary dup.map
    expect_rc "fpd-eval --vocabulary, an id twice: exit 1" 1
    expect_grep "fpd-eval --vocabulary, an id twice: names line and id" err.txt "dup.map:3: table '[a-z_.]*': id 0 appears twice"
    printf 'table\tid\trow\nprediction.weight\t0\t0\n' >tab.map
    run "$BUILD/fpd-eval" tqv.safetensors --ncf tq.test.rating tq.test.negative --vocabulary tab.map
    expect_rc "fpd-eval --vocabulary, not a table: exit 1" 1
    expect_grep "fpd-eval --vocabulary, not a table: says so" err.txt "tab.map:2: table 'prediction.weight' is not a table of this model"
    run "$BUILD/fpd-eval" tqv.safetensors --ncf tq.test.rating tq.test.negative --vocabulary tq.map --finetune x.tsv -o y.safetensors
    expect_rc "fpd-eval --vocabulary --finetune: a usage error" 2
else
    skip "train --free-dtype int4" "$DATA/movielens-1m/ratings.tsv not found"
fi
