# fpd-suggest: the seed paper's four (r, p) pairs for D = 128, sizes that equal what
# fpd-compress writes (checked with fpd-inspect), the targets (--budget, --ratio,
# --max-error), predicted errors against real fits, and clear usage errors (exit 2).
S="$BUILD/fpd-suggest"
C="$BUILD/fpd-compress"
I="$BUILD/fpd-inspect"
SAMPLE="$ROOT/samples/glove-10k.safetensors"
NCF="$DATA/ncf/ncf_gmf8_ml1m.safetensors"

run "$S" --help
expect_rc "help exits 0" 0
expect_grep "help on stdout" out.txt "^Usage: fpd-suggest --rows N --dim D"

run "$S" --version
expect_rc "version exits 0" 0
expect_grep "version lists features" out.txt "^fpd-suggest [0-9.]+ \(cpu"

# ---- the heuristic from (N, D) alone
for n in 1000000 10000000 4e7 100000000; do
    run "$S" --rows "$n" --dim 128 --json
    expect_rc "N=$n D=128: exit 0" 0
    cp out.txt "seed-$n.json"
    py_check "N=$n D=128: the top four are the seed paper's (24,1) (32,1) (16,2) (8,4)" "
import json; r = json.load(open('seed-$n.json'))
assert r['schema'] == 'fpd-suggest/1' and r['input'] is None
t = r['tables'][0]
top = [(c['r'], c['p']) for c in t['candidates'][:4]]
assert sorted(top) == sorted([(24, 1), (32, 1), (16, 2), (8, 4)]), top
assert t['selected']['r'] == 32 and t['selected']['p'] == 1 and t['candidates'][0]['selected']
for c in t['candidates']:
    for key in ('r', 'p', 'k', 'row_shape', 'col_shape', 'params', 'bytes', 'ratio', 'predicted_error', 'padding'):
        assert key in c, key
    assert c['predicted_error'] is None
    prod = 1
    for d in c['col_shape']: prod *= d
    assert prod == 128 and len(c['row_shape']) == c['k']
assert t['candidates'][0]['k'] == (4 if t['rows'] >= 100000000 else 3)"
done

run "$S" --rows 40000000 --dim 128 --top 4
expect_rc "text table: exit 0" 0
expect_grep "text table: the pick is marked" out.txt "^ +\*1 +32 +1 +3 +409x326x300 +8x4x4 "
expect_grep "text table: (24, 1) listed" out.txt "^ +4 +24 +1 +3 "

# odd and prime D, prime N: padded, a mode of size D, never refused
run "$S" --rows 1000003 --dim 97 --json
expect_rc "prime N and D: exit 0" 0
py_check "prime N and D: padded rows, 97x1x1 columns" "
import json; t = json.load(open('out.txt'))['tables'][0]
c = t['candidates'][0]
assert c['padding'] > 0 and c['col_shape'] == [97, 1, 1], c
p = 1
for n in c['row_shape']: p *= n
assert p == 1000003 + c['padding']"
run "$S" --rows 7 --dim 1 --json
expect_rc "tiny table, D = 1: exit 0" 0

# ---- invalid input: one line and a hint on stderr, exit 2
for args in "--rows 0 --dim 8" "--rows 10 --dim 0" "--rows -5 --dim 8" "--rows abc --dim 8" "--rows 10 --dim 1.5" \
            "--rows 10" "--dim 8" "--rows 1000 --dim 8 --budget abc" "--rows 1000 --dim 8 --ratio 0" \
            "--rows 1000 --dim 8 --max-error 0.5" "--rows 1000 --dim 8 --frobnicate" "--rows 1000 --dim 8 --rank 0"; do
    run "$S" $args
    expect_rc "'$args': exit 2" 2
    expect_grep "'$args': says why" err.txt "^fpd-suggest: error: "
    expect_lines "'$args': error and hint" err.txt 2
done
run "$S" --rows 0 --dim 8
expect_grep "rows 0: names the option" err.txt "--rows expects an integer >= 1, got '0'"
run "$S" --rows 1000 --dim 8 --max-error 0.5
expect_grep "max-error without data: says so" err.txt "needs a CHECKPOINT"
run "$S" --rows 40000000 --dim 128 --budget 1000
expect_rc "budget below every candidate: exit 2" 2
expect_grep "budget below every candidate: says so" err.txt "budget of 1000 bytes is below the smallest candidate"
run "$S" --rows 20000 --dim 100 --ratio 1e9
expect_rc "unreachable ratio: exit 2" 2
run "$S" "$SAMPLE" --rows 100 --dim 8
expect_rc "CHECKPOINT and --rows: exit 2" 2

# ---- targets
run "$S" --rows 40000000 --dim 128 --budget 3MiB --json
expect_rc "budget: exit 0" 0
py_check "budget: the largest candidate within 3 MiB" "
import json; t = json.load(open('out.txt'))['tables'][0]
s = t['selected']; b = 3 * 1048576
assert s['bytes'] <= b and all(c['bytes'] <= b for c in t['candidates']), s
assert all(c['bytes'] <= s['bytes'] for c in t['candidates'])"
run "$S" --rows 40000000 --dim 128 --ratio 5000 --json
expect_rc "ratio: exit 0" 0
py_check "ratio: at least 5000x smaller" "
import json; t = json.load(open('out.txt'))['tables'][0]
assert t['selected']['ratio'] >= 5000 and all(c['ratio'] >= 5000 for c in t['candidates'])"

# ---- the sample checkpoint: predicted sizes are the bytes fpd-compress writes
run "$S" "$SAMPLE" --json
expect_rc "sample: exit 0" 0
cp out.txt sample.json
py_check "sample: one table, errors predicted from all its rows" "
import json; r = json.load(open('sample.json'))
t = r['tables'][0]
assert t['name'] == 'word_embeddings.weight' and t['rows'] == 10000 and t['dim'] == 100
assert 'all 10000 rows' in t['error_estimate'], t['error_estimate']
assert all(0 < c['predicted_error'] < 1 for c in t['candidates'])"
i=0
have_python_numpy || i=3 # without python3 the loop is empty; py_check reports the skips
for cfg in $(python3 -c "
import json; t = json.load(open('sample.json'))['tables'][0]
seen = []
for c in t['candidates']:
    if c['bytes'] < 400000 and len(seen) < 4: seen.append('%d,%d,%d' % (c['r'], c['p'], c['k']))
print(' '.join(seen))" 2>/dev/null); do
    r=${cfg%%,*}; rest=${cfg#*,}; p=${rest%%,*}; k=${rest#*,}
    run "$C" "$SAMPLE" -o "c$i.safetensors" --rank "$r" --terms "$p" --cores "$k" --epochs 0 --json --no-progress
    expect_rc "sample (r=$r p=$p k=$k): fpd-compress exit 0" 0
    cp out.txt "c$i.json"
    run "$I" "c$i.safetensors" --json
    cp out.txt "i$i.json"
    py_check "sample (r=$r p=$p k=$k): predicted bytes = fpd-compress bytes = fpd-inspect bytes; error within 5%" "
import json
t = json.load(open('sample.json'))['tables'][0]
c = [x for x in t['candidates'] if (x['r'], x['p'], x['k']) == ($r, $p, $k)][0]
rep = json.load(open('c$i.json'))['tables'][0]
ins = json.load(open('i$i.json'))['tables'][0]
assert c['bytes'] == rep['bytes_after'] == ins['bytes_after'], (c['bytes'], rep['bytes_after'], ins['bytes_after'])
assert c['params'] == rep['params'] and c['row_shape'] == rep['row_shape'] == ins['row_shape'], (c, rep)
assert c['col_shape'] == rep['col_shape'] == ins['col_shape'] and c['ranks'] == rep['ranks'] == ins['ranks']
assert abs(c['predicted_error'] - rep['rel_error']) <= 0.05 * rep['rel_error'], (c['predicted_error'], rep['rel_error'])"
    i=$((i + 1))
done
if [ "$i" -ge 3 ]; then _report ok "sample: compared the candidates"; else _report "not ok" "sample: compared only $i candidates"; fi

# fpd-compress --encoding fpd's default is the pick of fpd-suggest
run "$C" "$SAMPLE" -o default.safetensors --encoding fpd --epochs 0 --json --no-progress
cp out.txt default.json
py_check "sample: fpd-compress's default FPD (r, p, k) is fpd-suggest's pick" "
import json
s = json.load(open('sample.json'))['tables'][0]['selected']
d = json.load(open('default.json'))['tables'][0]
assert (s['r'], s['p'], s['k'], s['bytes']) == (d['r'], d['p'], d['k'], d['bytes_after']), (s, d)"

run "$S" "$SAMPLE" --max-error 0.85 --json
expect_rc "max-error: exit 0" 0
py_check "max-error: the smallest candidate predicted at or below 0.85" "
import json; t = json.load(open('out.txt'))['tables'][0]
s = t['selected']
assert s['predicted_error'] <= 0.85
assert all(c['predicted_error'] <= 0.85 and c['bytes'] >= s['bytes'] for c in t['candidates'])"
run "$S" "$SAMPLE" --max-error 0.01
expect_rc "unreachable max-error: exit 1" 1
expect_grep "unreachable max-error: says the lowest" err.txt "no candidate is predicted to reach rel. error 0.01 \(lowest: "
run "$S" "$SAMPLE" --tables nope
expect_rc "unknown table: exit 2" 2
expect_grep "unknown table: named" err.txt "no tensor named 'nope'"

# ---- NCF: every eligible table; predictions against fits (--epochs 0)
if [ ! -f "$NCF" ]; then
    skip "NCF checkpoint" "$NCF not found"
else
    run "$S" "$NCF" --json --top 6
    expect_rc "ncf: exit 0" 0
    cp out.txt ncf.json
    py_check "ncf: both embedding tables, the 1-row and 1-D tensors skipped" "
import json; r = json.load(open('ncf.json'))
assert sorted(t['name'] for t in r['tables']) == ['item_embedding.weight', 'user_embedding.weight']
assert sorted(s['name'] for s in r['skipped']) == ['prediction.bias', 'prediction.weight']"
    for tab in user_embedding.weight item_embedding.weight; do
        for cfg in $(python3 -c "
import json; t = [x for x in json.load(open('ncf.json'))['tables'] if x['name'] == '$tab'][0]
print(' '.join('%d,%d,%d' % (c['r'], c['p'], c['k']) for c in t['candidates']))" 2>/dev/null); do
            r=${cfg%%,*}; rest=${cfg#*,}; p=${rest%%,*}; k=${rest#*,}
            run "$C" "$NCF" -o n.safetensors -f --tables "$tab" --rank "$r" --terms "$p" --cores "$k" --epochs 0 --json --no-progress
            cp out.txt n.json
            py_check "ncf $tab (r=$r p=$p k=$k): bytes equal, predicted error within 10% of the fit" "
import json
t = [x for x in json.load(open('ncf.json'))['tables'] if x['name'] == '$tab'][0]
c = [x for x in t['candidates'] if (x['r'], x['p'], x['k']) == ($r, $p, $k)][0]
f = [x for x in json.load(open('n.json'))['tables'] if x['name'] == '$tab'][0]
assert c['bytes'] == f['bytes_after'], (c['bytes'], f['bytes_after'])
assert abs(c['predicted_error'] - f['rel_error']) <= 0.10 * f['rel_error'], (c['predicted_error'], f['rel_error'])"
        done
    done
fi

# the pick, when dominated, names what dominates it (text and JSON); -q and "-"
run "$S" "$SAMPLE" --top 3 --json
cp out.txt dom.json
py_check "dominated pick: selected_dominated_by names a candidate no larger and no less accurate" "
import json; t = json.load(open('dom.json'))['tables'][0]
s, d = t['selected'], t['selected_dominated_by']
assert s['dominated'] and d is not None, (s, d)
assert d['bytes'] <= s['bytes'] and d['predicted_error'] <= s['predicted_error'], (s, d)
assert d['bytes'] <= 0.95 * s['bytes'] or d['predicted_error'] <= 0.99 * s['predicted_error'], (s, d)"
run "$S" "$SAMPLE" --top 3
expect_grep "dominated pick: named in the text" out.txt "the pick is dominated by #[0-9]+, r=[0-9]+ p=[0-9]+ k=[0-9]: [0-9]+ bytes \([0-9.]+% smaller\), predicted error 0\.[0-9]+"
"$S" - -q --no-errors <"$SAMPLE" >out.txt 2>err.txt
rc=$?
expect_rc "stdin and -q: exit 0" 0
expect_lines "stdin and -q: no output" out.txt 0

# ---- --total-budget: one budget split among tables by the data per row
# (fpd_budget_split: a row seen c times is worth min(D, lambda c^alpha) parameters)
run "$S" "$SAMPLE" --total-budget 64KiB --no-errors --json
expect_rc "total budget, one table: exit 0" 0
cp out.txt tb1.json
run "$S" "$SAMPLE" --budget 64KiB --no-errors --json
cp out.txt b1.json
py_check "total budget, one table: the share is the whole budget and the pick is --budget's" "
import json; t = json.load(open('tb1.json')); b = json.load(open('b1.json'))
assert t['targets']['total_budget_bytes'] == 65536 and t['targets']['alpha'] == 0.5
x = t['tables'][0]
assert x['budget_share_bytes'] == 65536 and x['interactions'] is None, x['budget_share_bytes']
assert x['selected']['bytes'] <= 65536 and x['selected'] == b['tables'][0]['selected']"
if [ ! -f "$NCF" ]; then
    skip "total budget over the NCF tables" "$NCF not found"
else
    # users seen 4 times each, items once: with alpha 0.5 a user row is worth twice an
    # item row, so shares are 6040*2 : 3706*1 of 40000 bytes (no row reaches D = 8)
    awk 'BEGIN { for (i = 0; i < 6040; i++) print 4 }' >u.txt
    awk 'BEGIN { for (i = 0; i < 3706; i++) print 1 }' >i.txt
    run "$S" "$NCF" --total-budget 40000 --row-freq user_embedding.weight=u.txt --row-freq item_embedding.weight=i.txt \
        --no-errors --json
    expect_rc "total budget, NCF tables with row counts: exit 0" 0
    cp out.txt tb2.json
    py_check "total budget, NCF tables: shares in the closed form, picks within them" "
import json; r = json.load(open('tb2.json'))
s = {t['name']: t for t in r['tables']}
u, i = s['user_embedding.weight'], s['item_embedding.weight']
eu, ei = 40000 * 12080 / 15786, 40000 * 3706 / 15786
assert abs(u['budget_share_bytes'] - eu) <= 1 and abs(i['budget_share_bytes'] - ei) <= 1, (u['budget_share_bytes'], ei)
assert u['interactions'] == 24160 and i['interactions'] == 3706
for t in (u, i):
    assert t['selected']['bytes'] <= t['budget_share_bytes']
    assert all(c['bytes'] <= t['selected']['bytes'] for c in t['candidates'] if c['bytes'] <= t['budget_share_bytes'])"
    run "$S" "$NCF" --total-budget 40000 --row-freq user_embedding.weight=u.txt --no-errors
    expect_rc "total budget: row counts for one table of two: exit 2" 2
    expect_grep "total budget: names the table without counts" err.txt "not for 'item_embedding.weight'"
    run "$S" "$NCF" --total-budget 40000 --row-freq user_embedding.weight=i.txt --row-freq item_embedding.weight=i.txt
    expect_rc "total budget: a count file of the wrong length: exit 1" 1
    expect_grep "total budget: says the lengths" err.txt "3706 counts for a table of 6040 rows"
    run "$S" "$NCF" --total-budget 100 --no-errors
    expect_rc "total budget below every candidate: exit 2" 2
    expect_grep "total budget: names the share" err.txt "its share of --total-budget is"
fi
run "$S" --rows 1000 --dim 8 --total-budget 1MiB
expect_rc "total budget without a checkpoint: exit 2" 2
run "$S" "$SAMPLE" --row-freq x.txt
expect_rc "--row-freq without --total-budget: exit 2" 2
run "$S" "$SAMPLE" --total-budget 1MiB --budget 1MiB
expect_rc "--total-budget with --budget: exit 2" 2
run "$S" "$SAMPLE" --total-budget 1MiB --alpha 5
expect_rc "--alpha out of range: exit 2" 2

# a table with Inf is bad data: exit 1 (as fpd-compress), naming row and column; with
# --no-errors the data is not read, so the suggestion is made
py_check "setup: a .npy table with one Inf" "
import numpy as np
a = np.ones((1500, 16), np.float32); a[1234, 5] = np.inf; np.save('inf.npy', a)"
run "$S" inf.npy
expect_rc "Inf in the table: exit 1" 1
expect_grep "Inf in the table: names row and column" err.txt "tensor 'inf': row 1234, column 5 is Inf"
run "$S" inf.npy --no-errors
expect_rc "Inf in the table, --no-errors: exit 0" 0
