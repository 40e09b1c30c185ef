# fpd-compress --init: an FPD checkpoint for training from scratch, checked by the
# outside NumPy reference (layout, and the variance of reconstructed rows).
C="$BUILD/fpd-compress"
run "$C" --init normal:0.5 --rows 50000 --dim 64 --rank 8 --terms 2 --name emb -o init.safetensors --json
expect_rc "init normal: exit 0" 0
cp out.txt init.json
py_check "init normal: layout valid and variance 0.25 on 5000 rows reconstructed independently (fpd_check)" "
import json, sys; sys.path.insert(0, '$(dirname "$CHECK")')
import numpy as np
from fpd_check import read_st, rows_from_cores, check
chk = check('init.safetensors')['tables'][0]
assert chk['name'] == 'emb' and chk['shapes_ok'] and chk['terms'] == 2 and chk['rows'] == 50000, chk
ts, meta = read_st('init.safetensors')
cores = [ts['emb.fpd.core%d' % m] for m in range(len(chk['row_shape']))]
idx = np.random.default_rng(0).choice(50000, 5000, replace=False)
x = rows_from_cores(cores, chk['row_shape'], chk['col_shape'], idx)
rep = json.load(open('init.json'))['init']
assert abs(rep['variance'] / 0.25 - 1) < 1e-4, rep
assert abs(x.var() / 0.25 - 1) < 0.05 and abs(x.mean()) < 0.05, (x.mean(), x.var())"
run "$C" --init uniform:0.05 --rows 20000 --dim 16 -o u.safetensors
expect_rc "init uniform: exit 0" 0
expect_grep "init uniform: realized variance reported" out.txt "variance 0.000833333 \(target 0.000833333\)"
run "$C" --init normal --rows 10 --dim 4 -o x.safetensors
expect_rc "init without scale: exit 2" 2
run "$C" --init normal:1 --rows 1000 -o x.safetensors
expect_rc "init without --dim: exit 2" 2
run "$C" --init laplace:1 --rows 1000 --dim 8 -o x.safetensors
expect_rc "init unknown kind: exit 2" 2
expect_absent "init errors: no file" x.safetensors

# --init-order: the new table's ids ordered from implicit feedback (issue 11's row order
# for training from scratch): 40 users in two groups, even users interacting with items
# 0-9 only and odd users with items 10-19; with row shape 8 x 5 every block of 5 rows
# that share a leading digit must hold users of one group, and the order is stored as
# row_perm (original id i at FPD row perm[i]) that verifies
python3 -c "
import random
random.seed(1)
with open('x.tsv', 'w') as f:
    for u in range(40):
        for i in random.sample(range(10), 6): f.write('%d\t%d\n' % (u, i + (10 if u % 2 else 0)))
"
run "$C" --init normal:0.01 --rows 40 --dim 8 --rank 2 --cores 2 -o ordered.safetensors --init-order x.tsv --json
expect_rc "init-order: exit 0" 0
cp out.txt ordered.json
expect_grep "init-order: the report names the order" out.txt '"row_order": "240 interactions of x.tsv, column 1"'
run "$BUILD/fpd-inspect" ordered.safetensors --verify
expect_rc "init-order: the table verifies (row_perm a permutation)" 0
py_check "init-order: each leading-digit block holds one group of users" "
import json, struct, numpy as np
b = open('ordered.safetensors', 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
assert json.load(open('ordered.json'))['init']['row_shape'] == [8, 5]
t = h['weight.fpd.row_perm']; o = t['data_offsets']
p = np.frombuffer(b[8 + n + o[0]:8 + n + o[1]], dtype={'I32': np.int32, 'I64': np.int64}[t['dtype']])
assert sorted(p.tolist()) == sorted(set(p.tolist())) and len(p) == 40
for blk in range(8):
    users = [u for u in range(40) if p[u] // 5 == blk]
    assert len({u % 2 for u in users}) <= 1, (blk, users)"
run "$C" --init normal:0.01 --rows 20 --dim 8 --rank 2 --cores 2 -o small.safetensors --init-order x.tsv
expect_rc "init-order: ids beyond the table's rows: exit 2" 2
expect_grep "init-order: says which ids" err.txt "x.tsv: ids up to 39 in column 1, but the table has 20 rows"
expect_absent "init-order: nothing written on failure" small.safetensors
run "$C" "$ROOT/samples/glove-10k.safetensors" -o g.safetensors --init-order x.tsv
expect_rc "--init-order without --init: exit 2" 2

# --order-from: the same order for a trained table before the fit (fpd-compress IN): the
# 40 users' rows (the group's vector plus noise, interleaved) in a table 'weight' [40, 8]
python3 -c "
import json, struct
import numpy as np
rng = np.random.default_rng(3)
a, b = rng.standard_normal(8), rng.standard_normal(8)
W = np.stack([(b if u % 2 else a) + 0.05 * rng.standard_normal(8) for u in range(40)]).astype('<f4')
h = json.dumps({'weight': {'dtype': 'F32', 'shape': [40, 8], 'data_offsets': [0, W.nbytes]}}).encode()
h += b' ' * (-len(h) % 8)
open('trained.safetensors', 'wb').write(struct.pack('<Q', len(h)) + h + W.tobytes())"
run "$C" trained.safetensors -o reordered.safetensors --tables weight --rank 2 --cores 2 --epochs 0 --order-from x.tsv --json
expect_rc "order-from: exit 0" 0
cp out.txt reordered.json
py_check "order-from: the report names the order; the fit says so" "
import json; t = json.load(open('reordered.json'))['tables'][0]
assert t['row_order'] == '240 interactions of x.tsv, column 1' and t['row_perm'] is True, t
assert t['fit'].startswith('order+') and t['row_shape'] == [8, 5], t"
run "$BUILD/fpd-inspect" reordered.safetensors --verify
expect_rc "order-from: the table verifies (row_perm a permutation)" 0
py_check "order-from: each leading-digit block holds one group of users" "
import json, struct, numpy as np
b = open('reordered.safetensors', 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
t = h['weight.fpd.row_perm']; o = t['data_offsets']
p = np.frombuffer(b[8 + n + o[0]:8 + n + o[1]], dtype={'I32': np.int32, 'I64': np.int64}[t['dtype']])
assert len(set(p.tolist())) == 40
for blk in range(8):
    users = [u for u in range(40) if p[u] // 5 == blk]
    assert len({u % 2 for u in users}) <= 1, (blk, users)"
run "$C" trained.safetensors -o rc2.safetensors --tables weight --rank 2 --cores 2 --epochs 0 --order-from weight=x.tsv --order-column weight=2 --json
expect_rc "order-from T=FILE, --order-column T=2: exit 0" 0
expect_grep "order-from column 2: the report names it" out.txt '"row_order": "240 interactions of x.tsv, column 2"'
if /usr/bin/python3 -c 'import numpy' >/dev/null 2>&1; then
    if FPD_LIBRARY="$BUILD/libfpd.so" PYTHONPATH="$ROOT/tools/python" /usr/bin/python3 -c "
import fpd
r = fpd.compress('trained.safetensors', 'py-order.safetensors', tables='weight', rank=2, k=2, epochs=0,
                 order={'weight': ('x.tsv', 2)}, queries=0)
assert r['tables'][0]['row_order'] == '240 interactions of x.tsv, column 2', r['tables'][0]
try:
    fpd.compress('trained.safetensors', 'py-bad.safetensors', tables='weight', order={'weight': ('x.tsv', 3)})
    raise SystemExit('column 3 accepted')
except ValueError:
    pass
" >py.txt 2>&1; then _report ok "order-from: Python fpd.compress(order={T: (FILE, 2)})"
    else _report "not ok" "order-from: Python fpd.compress(order=...)" "$(tail -c 600 py.txt)"; fi
else
    skip "order-from: Python fpd.compress(order=...)" "/usr/bin/python3 with numpy not available"
fi
run "$C" trained.safetensors -o bad.safetensors --tables weight --order-from missing.tsv
expect_rc "order-from: a missing file: exit 2" 2
expect_grep "order-from: a missing file: named" err.txt "--order-from: missing.tsv: no such file"
run "$C" trained.safetensors -o bad.safetensors --tables weight --order-from x.tsv --order-column 3
expect_rc "order-from: column 3: exit 2" 2
expect_grep "order-from: column 3: says so" err.txt "--order-column must be 1 or 2, got '3'"
run "$C" trained.safetensors -o bad.safetensors --tables weight --order-from x.tsv --cluster-rows
expect_rc "order-from with --cluster-rows: exit 2" 2
expect_grep "order-from with --cluster-rows: says why" err.txt "--order-from and --cluster-rows both order the rows"
run "$C" trained.safetensors -o bad.safetensors --tables weight --order-column 2
expect_rc "order-column without order-from: exit 2" 2
run "$C" trained.safetensors -o bad.safetensors --tables weight --order-from weight=x.tsv --order-column nope=2
expect_rc "order-column for a table without order-from: exit 2" 2
run "$C" trained.safetensors -o bad.safetensors --tables weight --order-from nope=x.tsv
expect_rc "order-from for a tensor that is not there: exit 2" 2
expect_grep "order-from for a tensor that is not there: named" err.txt "no tensor named 'nope'"
run "$C" --init normal:0.01 --rows 40 --dim 8 -o bad.safetensors --order-from x.tsv
expect_rc "order-from with --init: exit 2" 2
expect_absent "order-from refusals: nothing written" bad.safetensors
