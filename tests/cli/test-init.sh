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
