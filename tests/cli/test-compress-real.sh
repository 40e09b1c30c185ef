# fpd-compress on real checkpoints: the NCF GMF model (ML-1M) and the GloVe table,
# checked by fpd-inspect and by the outside NumPy reference shared/tools/fpd_check.py.
C="$BUILD/fpd-compress"
I="$BUILD/fpd-inspect"
NCF="$DATA/ncf/ncf_gmf8_ml1m.safetensors"
GLOVE="$DATA/glove/glove100d_top20k.npy"

# the sample checkpoint in samples/ (always present): by default the smallest encoding
# that meets --max-error 0.1 (GloVe: int8; no FPD candidate and not int4, 0.108)
run "$C" "$ROOT/samples/glove-10k.safetensors" -o sample.fpd.safetensors --json
expect_rc "sample: exit 0" 0
expect_exists "sample: output written" sample.fpd.safetensors
py_check "sample: JSON report (auto: int8, and why)" "
import json; r = json.load(open('out.txt'))
t = r['tables'][0]
assert r['schema'] == 'fpd-compress/2' and r['encoding'] == 'auto' and r['max_error'] == 0.1 and r['warnings'] == [], r
assert t['name'] == 'word_embeddings.weight' and t['compressed'] and t['encoding'] == 'int8', t
assert t['bytes_before'] == 4000000 and t['bytes_after'] == 10000 * 108, t
assert 0.005 < t['rel_error'] < 0.008 and t['baselines']['int4_rowwise']['rel_error'] > 0.1, t
assert 'int8 is the smallest that meets it' in t['why'] and 'FPD: no candidate' in t['why'], t['why']
assert r['totals']['bytes_after'] == t['bytes_after']"
run "$C" "$ROOT/samples/glove-10k.safetensors" -o sample-fpd.safetensors --encoding fpd --json
expect_rc "sample fpd: exit 0" 0
py_check "sample fpd: JSON report, and a warning that it misses the target" "
import json; r = json.load(open('out.txt'))
t = r['tables'][0]
assert t['encoding'] == 'fpd' and t['compressed'] and t['rows'] == 10000 and t['dim'] == 100, t
assert t['bytes_before'] == 4000000 and abs(t['ratio'] - t['bytes_before'] / t['bytes_after']) < 1e-3 * t['ratio']
assert 0 < t['rel_error'] < 1 and t['rel_error'] <= t['rel_error_fit'] + 1e-9, t
assert len(r['warnings']) == 1 and 'above the error target 0.1 (--max-error, 0.1 by default)' in r['warnings'][0], r['warnings']"
expect_grep "sample fpd: the warning on stderr too" err.txt "warning: word_embeddings.weight: fpd has relative error 0\.[0-9]+, above the error target 0\.1 \(--max-error, 0\.1 by default\)"
# with --budget (a size target that forces FPD) the warning says the bound is the default one
run "$C" "$ROOT/samples/glove-10k.safetensors" -o sample-budget.safetensors --budget 200KB
expect_rc "sample --budget: exit 0" 0
expect_grep "sample --budget: the warning names the default bound and what forced FPD" err.txt "above the error target 0\.1 \(--max-error, 0\.1 by default; --budget is an FPD size target\)"

if [ ! -f "$NCF" ]; then
    skip "NCF checkpoint" "$NCF not found"
else
    run "$C" "$NCF" -o ncf.q.safetensors --json
    expect_rc "ncf: exit 0" 0
    cp out.txt ncfq.json
    run "$I" ncf.q.safetensors --json
    expect_rc "ncf: fpd-inspect exit 0" 0
    cp out.txt ncfq-inspect.json
    py_check "ncf: auto writes both tables int4 (0.044, 0.045 < 0.1), inspect sees them with the written sizes" "
import json, os
r = json.load(open('ncfq-inspect.json')); c = json.load(open('ncfq.json'))
assert [t['name'] for t in r['tables']] == ['item_embedding.weight', 'user_embedding.weight'], r['tables']
for t in r['tables']:
    ct = [x for x in c['tables'] if x['name'] == t['name']][0]
    assert t['encoding'] == ct['encoding'] == 'int4' and t['bytes_after'] == ct['bytes_after'] == t['rows'] * 8, (t, ct)
    assert abs(t['rel_error'] - ct['rel_error']) < 1e-6 and 0.04 < t['rel_error'] < 0.05, (t, ct)
assert c['totals']['tables_int4'] == 2 and c['totals']['bytes_after'] <= os.path.getsize('ncf.q.safetensors')"
    run "$C" "$NCF" -o ncf.fpd.safetensors --encoding fpd --json
    expect_rc "ncf fpd: exit 0" 0
    cp out.txt ncf.json
    run "$I" ncf.fpd.safetensors
    expect_rc "ncf: fpd-inspect exit 0" 0
    expect_grep "ncf: inspect lists the user table" out.txt "user_embedding\.weight"
    expect_grep "ncf: inspect lists the item table" out.txt "item_embedding\.weight"
    run "$I" ncf.fpd.safetensors --json
    cp out.txt ncf-inspect.json
    py_check "ncf: inspect JSON has both FPD tables with the written sizes" "
import json, os
r = json.load(open('ncf-inspect.json')); c = json.load(open('ncf.json'))
names = sorted(t['name'] for t in r['tables'])
assert names == ['item_embedding.weight', 'user_embedding.weight'], names
for t in r['tables']:
    ct = [x for x in c['tables'] if x['name'] == t['name']][0]
    assert t['bytes_after'] == ct['bytes_after'] and t['encoding'] == 'fpd', (t, ct)
    assert t['rows'] == ct['rows'] and t['dim'] == ct['dim'] and t['fit'] == ct['fit'], (t, ct)
assert c['totals']['bytes_after'] + 0 <= os.path.getsize('ncf.fpd.safetensors')"
    py_check "ncf: other tensors copied byte for byte" "
import sys; sys.path.insert(0, '$(dirname "$CHECK")')
from fpd_check import read_st
a, _ = read_st('$NCF'); b, meta = read_st('ncf.fpd.safetensors')
for k in ('prediction.weight', 'prediction.bias'):
    assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes(), k
assert 'user_embedding.weight' not in b and meta['fpd.version'] == '1'"
    py_check "ncf: outside reference reconstructs the reported error" "
import json, subprocess, sys
out = subprocess.run([sys.executable, '$CHECK', 'check', 'ncf.fpd.safetensors', '--source', '$NCF', '--rows', '100000'],
                     capture_output=True, text=True, check=True).stdout
chk = json.loads(out); rep = json.load(open('ncf.json'))
for t in chk['tables']:
    assert t['shapes_ok'] and t['prod_rows_ok'] and t['prod_cols_ok'], t
    ours = [x for x in rep['tables'] if x['name'] == t['name']][0]['rel_error']
    assert abs(t['rel_error_sample'] - ours) < 1e-4, (t['name'], t['rel_error_sample'], ours)"
fi

if [ ! -f "$GLOVE" ]; then
    skip "GloVe table" "$GLOVE not found"
else
    run "$C" "$GLOVE" -o glove.fpd.safetensors --rank 16 --json
    expect_rc "glove npy: exit 0" 0
    cp out.txt glove.json
    run "$I" glove.fpd.safetensors --json
    expect_rc "glove: fpd-inspect exit 0" 0
    py_check "glove: FPD table named after the file, checked by the outside reference" "
import json, subprocess, sys
rep = json.load(open('glove.json')); ins = json.load(open('out.txt'))
assert [t['name'] for t in ins['tables']] == ['glove100d_top20k'], ins['tables']
out = subprocess.run([sys.executable, '$CHECK', 'check', 'glove.fpd.safetensors', '--source', '$GLOVE', '--rows', '20000'],
                     capture_output=True, text=True, check=True).stdout
t = json.loads(out)['tables'][0]
assert t['shapes_ok'] and t['ranks'] == [1, 16, 16, 1], t
assert abs(t['rel_error_sample'] - rep['tables'][0]['rel_error']) < 1e-4, (t, rep['tables'][0])"
fi

# stored cores in BF16: the reported error is that of the stored (rounded) cores
run "$C" "$ROOT/samples/glove-10k.safetensors" -o bf16.safetensors --rank 4 --epochs 0 --core-dtype bf16 --json
expect_rc "bf16 cores: exit 0" 0
cp out.txt bf16.json
py_check "bf16 cores: report and metadata match the error of the stored cores (outside reference)" "
import json, subprocess, sys
out = subprocess.run([sys.executable, '$CHECK', 'check', 'bf16.safetensors', '--source', '$ROOT/samples/glove-10k.safetensors',
                      '--rows', '10000'], capture_output=True, text=True, check=True).stdout
t = json.loads(out)['tables'][0]; rep = json.load(open('bf16.json'))['tables'][0]
assert rep['core_dtype'] == 'BF16'
assert abs(t['rel_error_sample'] - rep['rel_error']) < 1e-5, (t['rel_error_sample'], rep['rel_error'])"

# row frequencies: the weighted error is reported, and weighting lowers it
if have_python_numpy; then
    python3 -c "
for i in range(10000): print(int(1e6 / (i + 1) ** 1.05))" > zipf.txt
    run "$C" "$ROOT/samples/glove-10k.safetensors" -o plain.safetensors --rank 8 --epochs 2 --row-freq zipf.txt --json
    cp out.txt plain.json
    expect_rc "row-freq: exit 0" 0
    py_check "row-freq: weighted error reported and below the plain error" "
import json; t = json.load(open('plain.json'))['tables'][0]
assert t['rel_error_weighted'] < t['rel_error'], t"
    printf '1\n2\nx\n' > bad-freq.txt
    run "$C" "$ROOT/samples/glove-10k.safetensors" -o bad.safetensors --row-freq bad-freq.txt
    expect_rc "row-freq with a bad line: exit 2" 2
    expect_grep "row-freq with a bad line: file and line" err.txt "bad-freq.txt:3: 'x' is not a non-negative count"
    expect_absent "row-freq with a bad line: no output" bad.safetensors
fi

# a learned row permutation: stored as T.fpd.row_perm, counted in the size, and the
# outside reference (which applies it) agrees with the reported error
run "$C" "$ROOT/samples/glove-10k.safetensors" -o perm.safetensors --rank 8 --epochs 0 --als 1 --cluster-rows --json
expect_rc "cluster-rows: exit 0" 0
cp out.txt perm.json
py_check "cluster-rows: row_perm valid, bytes counted, error confirmed (fpd_check)" "
import json, subprocess, sys
out = subprocess.run([sys.executable, '$CHECK', 'check', 'perm.safetensors', '--source', '$ROOT/samples/glove-10k.safetensors',
                      '--rows', '10000'], capture_output=True, text=True, check=True).stdout
t = json.loads(out)['tables'][0]; rep = json.load(open('perm.json'))['tables'][0]
assert t['row_perm'] and t['row_perm_ok'] and t['shapes_ok'], t
assert rep['row_perm'] and rep['bytes_after'] == t['params'] * 4 + 10000 * 4, (rep['bytes_after'], t['params'])
assert abs(t['rel_error_sample'] - rep['rel_error']) < 1e-5, (t['rel_error_sample'], rep['rel_error'])"

# size and error targets pick the heuristic's candidates
run "$C" "$ROOT/samples/glove-10k.safetensors" -o budget.safetensors --budget 200KiB --epochs 0 --als 0 --json
expect_rc "budget: exit 0" 0
py_check "budget: the written cores fit the budget" "
import json; t = json.load(open('out.txt'))['tables'][0]
assert t['bytes_after'] <= 200 * 1024, t['bytes_after']"
run "$C" "$ROOT/samples/glove-10k.safetensors" -o ratio.safetensors --ratio 40 --epochs 0 --als 0 --json
expect_rc "ratio: exit 0" 0
py_check "ratio: at least 40x" "
import json; t = json.load(open('out.txt'))['tables'][0]
assert t['ratio'] >= 40, t['ratio']"
run "$C" "$ROOT/samples/glove-10k.safetensors" -o maxerr.safetensors --max-error 0.9 --epochs 0 --als 0 --json
expect_rc "max-error: exit 0" 0
py_check "max-error: predicted and fitted error within the target (TT-SVD alone)" "
import json; t = json.load(open('out.txt'))['tables'][0]
assert t['predicted_error'] <= 0.9 and t['rel_error'] <= 0.9 * 1.02, t"
run "$C" "$ROOT/samples/glove-10k.safetensors" -o none.safetensors --budget 1K
expect_rc "budget below every candidate: exit 2" 2
expect_grep "budget below every candidate: says so" err.txt "below the smallest candidate"

# the plain TT-SVD baseline at the same size: with default settings it is the fit's own
# first stage; with --cluster-rows it must fit in the same bytes
run "$C" "$ROOT/samples/glove-10k.safetensors" -o base.safetensors --rank 12 --json
cp out.txt base.json
run "$C" "$ROOT/samples/glove-10k.safetensors" -o basec.safetensors --rank 12 --cluster-rows --json
cp out.txt basec.json
py_check "tt-svd baseline: same rank and error as the fit's first stage; within the bytes with a permutation" "
import json
t = json.load(open('base.json'))['tables'][0]; b = t['baselines']['tt_svd']
assert b['r'] == 12 and b['bytes'] == t['bytes_after'] and abs(b['rel_error'] - t['rel_error_fit']) < 1e-6, (t, b)
c = json.load(open('basec.json'))['tables'][0]; bc = c['baselines']['tt_svd']
assert bc['bytes'] <= c['bytes_after'] and bc['r'] > 12 and c['rel_error'] < bc['rel_error'], (c['rel_error'], bc)"
