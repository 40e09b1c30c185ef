# fpd-suggest --free-coords auto|0|C: c (free coordinates per row, format free/1) in
# the text and JSON, sizes against the closed form (cores + c (N + D)), the rule's pick
# on the GloVe sample under a budget (c > 0, predicted error equal to libfpd's fit with
# those free coordinates, via the Python binding), the fpd-compress options it prints,
# --free-coords 0 as the default, and refusals (exit 2).
S="$BUILD/fpd-suggest"
SAMPLE="$ROOT/samples/glove-10k.safetensors"

run "$S" --help
expect_grep "help: --free-coords" out.txt "--free-coords auto\|0\|C"

# ---- 0 is the default: the same output, no C column
run "$S" "$SAMPLE" --budget 150KB
cp out.txt default.txt
run "$S" "$SAMPLE" --budget 150KB --free-coords 0
expect_rc "--free-coords 0: exit 0" 0
if cmp -s out.txt default.txt; then _report ok "--free-coords 0: the default's output"; else
    _report "not ok" "--free-coords 0: the default's output" "$(diff default.txt out.txt | head -c 400)"; fi
expect_no_grep "--free-coords 0: no C column" out.txt "RANK +R +P +K +C "

# ---- fixed C: every candidate carries it; sizes are the closed form
run "$S" --rows 20000 --dim 64 --free-coords 3 --all --json
expect_rc "fixed C: exit 0" 0
py_check "fixed C: every candidate c = 3, params = cores + 3 (N + D), bytes = 4 params" "
import json; r = json.load(open('out.txt'))
assert r['targets']['free_coords'] == 3
for c in r['tables'][0]['candidates']:
    cores = c['p'] * sum(c['ranks'][m] * c['row_shape'][m] * c['col_shape'][m] * c['ranks'][m + 1] for m in range(c['k']))
    assert c['free_coords'] == 3 and c['params'] == cores + 3 * (20000 + 64) and c['bytes'] == 4 * c['params'], c"
run "$S" --rows 20000 --dim 64 --free-coords 3
expect_grep "fixed C: C column" out.txt "^ +RANK +R +P +K +C +ROW SHAPE"
expect_grep "fixed C: the pick says c" out.txt "pick: #1, r=[0-9]+ p=1 k=3 c=3, "
expect_grep "fixed C: fpd-compress options" out.txt "fpd-compress: .* --free-coords 3$"

# ---- auto without data: listed under a budget, never picked
run "$S" --rows 20000 --dim 64 --budget 1MB --free-coords auto --all --json
expect_rc "auto, sizes only: exit 0" 0
py_check "auto, sizes only: c in 1, 2, 4, 8 listed with p = 1, the pick has c = 0" "
import json; t = json.load(open('out.txt'))['tables'][0]
cs = sorted({c['free_coords'] for c in t['candidates']})
assert cs == [0, 1, 2, 4, 8], cs
assert all(c['p'] == 1 for c in t['candidates'] if c['free_coords'])
assert t['selected']['free_coords'] == 0"
run "$S" --rows 20000 --dim 64 --free-coords auto --all --json
py_check "auto without a target: c = 0 only" "
import json; t = json.load(open('out.txt'))['tables'][0]
assert {c['free_coords'] for c in t['candidates']} == {0}"

# ---- auto on the GloVe sample under 150 KB: c > 0 wins, and the prediction is the fit
run "$S" "$SAMPLE" --budget 150KB --free-coords auto --json --all
expect_rc "auto on GloVe: exit 0" 0
cp out.txt auto.json
py_check "auto on GloVe: the pick has c > 0, within the budget, predicted below every c = 0 candidate in it" "
import json; r = json.load(open('auto.json')); t = r['tables'][0]
assert r['targets']['free_coords'] == 'auto'
s = t['selected']
assert s['free_coords'] > 0 and s['bytes'] <= 150000, s
assert 'c > 0' in t['error_estimate'], t['error_estimate']
c0 = [c for c in t['candidates'] if c['free_coords'] == 0 and c['bytes'] <= 150000]
assert c0 and all(s['predicted_error'] < c['predicted_error'] for c in c0)"
export PYTHONPATH="$ROOT/tools/python" FPD_LIBRARY="$BUILD/libfpd.so"
py_check "auto on GloVe: predicted error = fpd.fit(free_coords = c, no ALS, 0 epochs) to 0.1%; params equal" "
import json, fpd
t = json.load(open('auto.json'))['tables'][0]; s = t['selected']
with fpd.open('$SAMPLE') as ck: W = ck.tensor('word_embeddings.weight')
shape = {'row_shape': s['row_shape'], 'col_shape': s['col_shape'], 'ranks': s['ranks'], 'terms': s['p']}
layer, rep = fpd.fit(W, shape=shape, als_sweeps=0, epochs=0, free_coords=s['free_coords'])
assert abs(rep['rel_error_free'] - s['predicted_error']) < 1e-3 * s['predicted_error'], (rep, s)
assert layer.param_count == s['params'], (layer.param_count, s['params'])"
unset PYTHONPATH FPD_LIBRARY
run "$S" "$SAMPLE" --budget 150KB --free-coords auto
expect_grep "auto on GloVe: the pick line" out.txt "pick: #[0-9]+, r=[0-9]+ p=1 k=3 c=[1-8], [0-9]+ bytes, .*--free-coords auto"
expect_grep "auto on GloVe: fpd-compress options" out.txt \
    "fpd-compress: compresses it with the pick given as --encoding fpd --rank [0-9]+ --terms 1 --cores 3 --free-coords [1-8]$"

# ---- refusals: exit 2 with one error line and the hint
for args in "--rows 1000 --dim 100 --free-coords 101" "--rows 1000 --dim 100 --free-coords abc" \
            "--rows 1000 --dim 100 --free-coords -1" "--rows 1000 --dim 100 --free-coords 2.5" \
            "--rows 1000 --dim 100 --free-coords"; do
    run "$S" $args
    expect_rc "'$args': exit 2" 2
    expect_lines "'$args': error and hint" err.txt 2
done
run "$S" --rows 1000 --dim 100 --free-coords 101
expect_grep "c > D: names the option and D" err.txt "--free-coords 101 exceeds --dim 100"
run "$S" --rows 1000 --dim 100 --free-coords abc
expect_grep "bad spelling: says what is expected" err.txt "--free-coords expects auto, 0 or a count C >= 1, got 'abc'"
run "$S" "$SAMPLE" --free-coords 101
expect_rc "c > D of a checkpoint's table: exit 2" 2
expect_grep "c > D of a checkpoint's table: names the tensor" err.txt \
    "tensor 'word_embeddings.weight': plan: free_coords = 101 > dim = 100"
run "$S" --rows 20000 --dim 64 --free-coords 3 --budget 200000
expect_rc "budget below C (N + D) values: exit 2" 2
expect_grep "budget below C (N + D) values: names the smallest, with c" err.txt "smallest candidate .*c=3"
