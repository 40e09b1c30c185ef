# fpd-eval: HR@10 / NDCG@10 of GMF checkpoints (dense and FPD) on the NCF
# leave-one-out protocol, task-aware finetuning (--finetune), and the NCF training
# interactions rebuilt from MovieLens-1M (--movielens).
E="$BUILD/fpd-eval"
NCF="$DATA/ncf/ncf_gmf8_ml1m.safetensors"
RAT="$DATA/ncf/ml-1m.test.rating"
NEG="$DATA/ncf/ml-1m.test.negative"
ML="$DATA/movielens-1m/ratings.tsv"

run "$E" --help
expect_rc "help exits 0" 0
expect_grep "help on stdout" out.txt "Usage: fpd-eval CHECKPOINT --ncf"
run "$E"
expect_rc "no checkpoint: exit 2" 2
expect_grep "no checkpoint: one line and a hint" err.txt "^Try 'fpd-eval --help'"
run "$E" x.safetensors
expect_rc "no test set: exit 2" 2
run "$E" x.safetensors --ncf only-one
expect_rc "--ncf with one file: exit 2" 2
run "$E" x.safetensors --ncf a b -o out.safetensors
expect_rc "-o without --finetune: exit 2" 2

# A hand-made GMF (3 users, 5 items, D = 2; w = (1, 1), b = 0: logits are dot
# products) and test files; the ranks are worked out by hand:
#   user 0 (1, 0): held-out 1 (logit 2) vs 0 (3), 2 (1), 4 (2, a tie)  -> rank 1 or 2
#   user 1 (0, 1): held-out 0 (logit 0) vs 3 (5), 4 (5), 2 (0, a tie)  -> rank 2 or 3
#   user 2 (1, 1): held-out 4 (logit 7) vs 0 (3), 3 (5), 1 (2)          -> rank 0
# (a tie puts the held-out item at a uniformly drawn place among its ties). Only 4
# candidates, so HR@10 = 1 and NDCG@10 = (1/log2(r0 + 2) + 1/log2(r1 + 2) + 1) / 3.
if command -v python3 >/dev/null 2>&1; then
    python3 -c "
import json, struct
def st(path, tensors):
    h, data = {}, b''
    for name, shape, vals in tensors:
        raw = struct.pack('<%df' % len(vals), *vals)
        h[name] = {'dtype': 'F32', 'shape': shape, 'data_offsets': [len(data), len(data) + len(raw)]}
        data += raw
    hb = json.dumps(h).encode(); hb += b' ' * (-len(hb) % 8)
    open(path, 'wb').write(struct.pack('<Q', len(hb)) + hb + data)
st('tiny.safetensors', [('user_embedding.weight', [3, 2], [1, 0, 0, 1, 1, 1]),
                        ('item_embedding.weight', [5, 2], [3, 0, 2, 0, 1, 0, 0, 5, 2, 5]),
                        ('prediction.weight', [1, 2], [1, 1]), ('prediction.bias', [1], [0])])
st('notgmf.safetensors', [('weight', [2, 2], [1, 2, 3, 4])])
open('tiny.rating', 'w').write('0\t1\t5\t0\n1\t0\t4\t0\n2\t4\t3\t0\n')
open('tiny.negative', 'w').write('(0,1)\t0\t2\t4\n(1,0)\t3\t4\t2\n(2,4)\t0\t3\t1\n')
open('bad.negative', 'w').write('(0,1)\t0\t2\t4\n(1,3)\t3\t4\t2\n(2,4)\t0\t3\t1\n')
open('train.tsv', 'w').write(''.join('%d\t%d\n' % (u, i) for u in range(3) for i in range(5) if (u + i) % 2 == 0))
"
    run "$E" tiny.safetensors --ncf tiny.rating tiny.negative --json
    expect_rc "tiny: exit 0" 0
    py_check "tiny: HR@10 and NDCG@10 as worked out by hand" "
import json, math; r = json.load(open('out.txt'))
assert r['schema'] == 'fpd-eval/2' and r['input'] == 'tiny.safetensors' and 'output' not in r
assert r['test']['users'] == 3 and r['test']['candidates'] == 4, r
assert abs(r['hr10'] - 1.0) < 1e-9, r['hr10']
assert min(abs(r['ndcg10'] - (1 / math.log2(r0 + 2) + 1 / math.log2(r1 + 2) + 1) / 3)
           for r0 in (1, 2) for r1 in (2, 3)) < 1e-6, r['ndcg10']
assert [t['kind'] for t in r['tables']] == ['dense', 'dense']"
    run "$E" tiny.safetensors --ncf tiny.rating tiny.negative
    expect_grep "tiny: human output" out.txt "^HR@10 +1\.0000"
    run "$E" tiny.safetensors --ncf tiny.rating tiny.negative -q
    expect_rc "tiny -q: exit 0" 0
    expect_lines "tiny -q: nothing on stdout" out.txt 0
    run "$E" tiny.safetensors --ncf tiny.rating bad.negative
    expect_rc "negative file out of step: exit 1" 1
    expect_grep "negative file out of step: names the line" err.txt "^fpd-eval: error: bad\.negative:2: \(1,3\) does not match line 2"
    run "$E" notgmf.safetensors --ncf tiny.rating tiny.negative
    expect_rc "not a GMF checkpoint: exit 1" 1
    expect_grep "not a GMF checkpoint: says so" err.txt "no tensor 'user_embedding\\.weight'.*not an NCF checkpoint.*not supported"
    run "$E" missing.safetensors --ncf tiny.rating tiny.negative
    expect_rc "missing checkpoint: exit 1" 1
    expect_grep "missing checkpoint: one clear line" err.txt "^fpd-eval: error: missing\.safetensors: "
    # finetuning a dense model: runs, writes, keeps the other tensors
    run "$E" tiny.safetensors --ncf tiny.rating tiny.negative --finetune train.tsv -o tuned.safetensors --epochs 2 --batch 5 --json
    expect_rc "tiny finetune: exit 0" 0
    expect_exists "tiny finetune: output written" tuned.safetensors
    py_check "tiny finetune: report" "
import json; top = json.load(open('out.txt')); r = top['finetune']
assert top['input'] == 'tiny.safetensors' and top['output'] == r['output'] == 'tuned.safetensors', top
assert r['positives'] == 8 and r['epochs'] == 2 and 'before' in r and 'after' in r, r"
    run "$E" tiny.safetensors --ncf tiny.rating tiny.negative --finetune train.tsv -o tuned.safetensors
    expect_rc "finetune onto an existing output without -f: exit 2" 2
    printf '0\t9\n' > badtrain.tsv
    run "$E" tiny.safetensors --ncf tiny.rating tiny.negative --finetune badtrain.tsv -o t2.safetensors
    expect_rc "finetune with an item outside the table: exit 1" 1
    expect_grep "finetune with an item outside the table: says so" err.txt "badtrain\.tsv: ids up to user 0, item 9"
    expect_absent "finetune failure writes nothing" t2.safetensors
else
    skip "tiny GMF" "python3 not available"
fi

if [ ! -f "$NCF" ] || [ ! -f "$RAT" ] || [ ! -f "$NEG" ]; then
    skip "NCF GMF checkpoint" "$DATA/ncf not found"
else
    # the known values (shared/data/README.md): HR@10 0.6368, NDCG@10 0.3691
    run "$E" "$NCF" --ncf "$RAT" "$NEG" --json
    expect_rc "ncf: exit 0" 0
    cp out.txt ncf-eval.json
    py_check "ncf: HR@10 = 0.6368 and NDCG@10 = 0.3691 (+-0.0005)" "
import json; r = json.load(open('ncf-eval.json'))
assert r['test']['users'] == 6040 and r['test']['candidates'] == 100
assert abs(r['hr10'] - 0.6368) <= 0.0005, r['hr10']
assert abs(r['ndcg10'] - 0.3691) <= 0.0005, r['ndcg10']"

    # a compressed checkpoint (FPD v1 tables): fpd-eval against an outside NumPy
    # evaluation of the same file (shared/tools/fpd_check.py reconstructs the rows)
    "$BUILD/fpd-compress" "$NCF" -o ncf-r8.safetensors --rank 8 --epochs 0 -q
    run "$E" ncf-r8.safetensors --ncf "$RAT" "$NEG" --json
    expect_rc "ncf r=8: exit 0" 0
    cp out.txt ncf-r8.json
    py_check "ncf r=8: FPD tables read; HR@10 and NDCG@10 match an outside NumPy evaluation" "
import json, sys, numpy as np; sys.path.insert(0, '$(dirname "$CHECK")')
from fpd_check import read_st, rows_from_cores
r = json.load(open('ncf-r8.json'))
assert [t['kind'] for t in r['tables']] == ['fpd', 'fpd'], r['tables']
ts, meta = read_st('ncf-r8.safetensors')
def table(T):
    m = json.loads(meta['fpd.table.' + T]); k = len(m['row_shape'])
    return rows_from_cores([ts['%s.fpd.core%d' % (T, i)] for i in range(k)], m['row_shape'], m['col_shape'], np.arange(m['rows']))
U, I = table('user_embedding.weight'), table('item_embedding.weight')
w = ts['prediction.weight'].astype(np.float64).reshape(-1); b = float(ts['prediction.bias'].reshape(-1)[0])
hits = ndcg = 0.0
for line in open('$NEG'):
    f = line.split('\t'); u, i = map(int, f[0].strip('()').split(','))
    c = np.array([i] + [int(x) for x in f[1:]])
    z = (U[u] * I[c]) @ w + b
    rank = int((z[1:] > z[0]).sum())
    if rank < 10: hits += 1; ndcg += 1 / np.log2(rank + 2)
assert abs(hits / 6040 - r['hr10']) < 2e-3 and abs(ndcg / 6040 - r['ndcg10']) < 2e-3, (hits / 6040, r['hr10'], ndcg / 6040, r['ndcg10'])"

    if [ ! -f "$ML" ]; then
        skip "MovieLens id map" "$ML not found"
    else
        run "$E" "$NCF" --ncf "$RAT" "$NEG" --movielens "$ML" --write-train ncf-train.tsv --json
        expect_rc "movielens map: exit 0" 0
        cp out.txt map.json
        py_check "movielens map: every held-out item rated by its user; 994169 training lines; HR checks" "
import json; m = json.load(open('map.json'))['movielens_map']
assert m['users'] == 6040 and m['items'] == 3706 and m['ratings'] == 1000209, m
assert m['test_unrated'] == 0 and m['test_out_of_group'] == 0, m
assert m['neg_rated'] < 0.001 * m['neg_total'], m
assert m['train'] == 994169 and m['written_lines'] == 994169, m
assert m['hr10_train'] > 0.7 and m['hr10_train_shuffled'] < 0.25, m
assert sum(1 for _ in open('ncf-train.tsv')) == 994169"
        # task-aware finetuning, one short epoch on a tenth of the data: runs and improves
        awk 'NR % 10 == 0' ncf-train.tsv > train-10pc.tsv
        run "$E" ncf-r8.safetensors --ncf "$RAT" "$NEG" --finetune train-10pc.tsv -o ncf-r8-task.safetensors --epochs 1 --json --reference "$NCF"
        expect_rc "finetune: exit 0" 0
        cp out.txt ft.json
        py_check "finetune: HR@10 rises; the output keeps FPD tables marked +task" "
import json; r = json.load(open('ft.json')); f = r['finetune']
assert f['after']['hr10'] > f['before']['hr10'], f
assert 0 < f['rel_error_user'] and 0 < f['rel_error_item'], f"
        run "$BUILD/fpd-inspect" ncf-r8-task.safetensors
        expect_grep "finetune: fpd-inspect reads the output" out.txt "fit [a-z+-]*\+task"
    fi
fi

# NCF's MLP and NeuMF checkpoints (the Keras models' tensor names, fpd-formats.h):
# HR@10 / NDCG@10 against a plain-Python reference of the NCF equations (random
# weights, 40 users, 30 candidates each), task-aware finetuning written and read back
# (its "after" figures equal a fresh evaluation of the output), and a checkpoint of
# another model refused with "this model is not supported"
python3 - <<'PYEOF' >ref.txt 2>py.err
import json, math, random, struct
random.seed(5)
U, I, DM, DP, H = 40, 60, 3, 4, [8, 5, 3]
def w(path, tensors):
    hdr, off, blobs = {}, 0, b''
    for n, (shape, data) in tensors.items():
        b = struct.pack('<%df' % len(data), *data)
        hdr[n] = {'dtype': 'F32', 'shape': shape, 'data_offsets': [off, off + len(b)]}
        off += len(b); blobs += b
    h = json.dumps(hdr).encode(); h += b' ' * ((8 - len(h) % 8) % 8)
    open(path, 'wb').write(struct.pack('<Q', len(h)) + h + blobs)
def rnd(n, s=0.5): return [random.uniform(-s, s) for _ in range(n)]
cand = [[(u * 7 + c * 13) % I for c in range(30)] for u in range(U)]
for u in range(U): cand[u] = list(dict.fromkeys(cand[u]))[:30]
with open('t.rating', 'w') as f:
    for u in range(U): f.write('%d\t%d\n' % (u, cand[u][0]))
with open('t.negative', 'w') as f:
    for u in range(U): f.write('(%d,%d)\t' % (u, cand[u][0]) + '\t'.join(map(str, cand[u][1:])) + '\n')
with open('t.train', 'w') as f:
    for u in range(U):
        for c in cand[u][:3]: f.write('%d\t%d\n' % (u, c))
for model in ('mlp', 'neumf'):
    t = {}
    if model == 'neumf':
        t['mf_embedding_user.weight'] = ([U, DM], rnd(U * DM)); t['mf_embedding_item.weight'] = ([I, DM], rnd(I * DM))
        t['mlp_embedding_user.weight'] = ([U, DP], rnd(U * DP)); t['mlp_embedding_item.weight'] = ([I, DP], rnd(I * DP))
    else:
        t['user_embedding.weight'] = ([U, DP], rnd(U * DP)); t['item_embedding.weight'] = ([I, DP], rnd(I * DP))
    dims = [2 * DP] + H
    for l in range(len(H)):
        t['layer%d.weight' % (l + 1)] = ([dims[l + 1], dims[l]], rnd(dims[l + 1] * dims[l], 0.8))
        t['layer%d.bias' % (l + 1)] = ([dims[l + 1]], rnd(dims[l + 1], 0.2))
    P = H[-1] + (DM if model == 'neumf' else 0)
    t['prediction.weight'] = ([1, P], rnd(P, 1.0)); t['prediction.bias'] = ([1], [0.1])
    w(model + '.safetensors', t)
    def logit(u, i):
        h = []
        if model == 'neumf':
            h = [t['mf_embedding_user.weight'][1][u * DM + j] * t['mf_embedding_item.weight'][1][i * DM + j] for j in range(DM)]
        ue = t['mlp_embedding_user.weight' if model == 'neumf' else 'user_embedding.weight'][1]
        ie = t['mlp_embedding_item.weight' if model == 'neumf' else 'item_embedding.weight'][1]
        x = ue[u * DP:(u + 1) * DP] + ie[i * DP:(i + 1) * DP]
        for l in range(len(H)):
            W, b = t['layer%d.weight' % (l + 1)][1], t['layer%d.bias' % (l + 1)][1]
            x = [max(0.0, b[o] + sum(W[o * len(x) + q] * x[q] for q in range(len(x)))) for o in range(len(b))]
        h += x
        return 0.1 + sum(a * b for a, b in zip(t['prediction.weight'][1], h))
    hits = ndcg = 0.0
    for u in range(U):
        z = [logit(u, i) for i in cand[u]]
        r = sum(1 for v in z[1:] if v > z[0])
        if r < 10: hits += 1; ndcg += 1 / math.log2(r + 2)
    print(model, hits / U, ndcg / U)
w('other.safetensors', {'foo.weight': ([3, 2], [0.0] * 6)})
PYEOF
for m in mlp neumf; do
    run "$BUILD/fpd-eval" $m.safetensors --ncf t.rating t.negative --json
    expect_rc "NCF $m checkpoint: exit 0" 0
    cp out.txt $m-eval.json
    py_check "NCF $m checkpoint: HR@10 and NDCG@10 equal the plain-Python reference" "
import json
ref = {l.split()[0]: (float(l.split()[1]), float(l.split()[2])) for l in open('ref.txt')}
e = json.load(open('$m-eval.json'))
hr, nd = ref['$m']
assert 0.0 < hr < 1.0, hr
assert abs(e['hr10'] - hr) < 1e-9 and abs(e['ndcg10'] - nd) < 1e-6, (e, hr, nd)
# the report lists the model's own tables (it named GMF's two, [0, 0], for MLP/NeuMF)
names = {'mlp': ['user_embedding.weight', 'item_embedding.weight'],
         'neumf': ['mf_embedding_user.weight', 'mf_embedding_item.weight', 'mlp_embedding_user.weight',
                   'mlp_embedding_item.weight']}['$m']
assert [t['name'] for t in e['tables']] == names, e['tables']
assert all(t['rows'] > 0 and t['dim'] > 0 and t['kind'] == 'dense' for t in e['tables']), e['tables']"
    run "$BUILD/fpd-eval" $m.safetensors --ncf t.rating t.negative --finetune t.train -o $m-ft.safetensors --epochs 2 \
        --batch 20 --json
    expect_rc "NCF $m checkpoint: task-aware finetune exit 0" 0
    cp out.txt $m-ft.json
    run "$BUILD/fpd-eval" $m-ft.safetensors --ncf t.rating t.negative --json
    expect_rc "NCF $m finetuned checkpoint: evaluates" 0
    cp out.txt $m-ft-eval.json
    py_check "NCF $m: the finetuned checkpoint read back gives the reported 'after' HR@10" "
import json
f = json.load(open('$m-ft.json')); e = json.load(open('$m-ft-eval.json'))
s = json.dumps(f)
after = f['finetune']['after'] if 'finetune' in f else f['after']
assert abs(after['hr10'] - e['hr10']) < 1e-9 and abs(after['ndcg10'] - e['ndcg10']) < 1e-9, (after, e)"
done
run "$BUILD/fpd-eval" other.safetensors --ncf t.rating t.negative
expect_rc "a checkpoint of another model: exit 1" 1
expect_grep "a checkpoint of another model: 'this model is not supported'" err.txt "this model is not supported"
