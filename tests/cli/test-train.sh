# sample-train-gmf: GMF trained from scratch with dense and FPD tables on
# MovieLens-1M. A smoke run only (one epoch, 200 users): the trainer runs, writes
# checkpoints that fpd-inspect and fpd-eval read, and fpd-eval reproduces the
# trainer's HR@10 on the split it wrote. The accuracy figures take minutes and
# are in README (not part of the tests).
T="$BUILD/sample-train-gmf"
ML="$DATA/movielens-1m/ratings.tsv"

run "$T" --help
expect_rc "help exits 0" 0
expect_grep "help on stdout" out.txt "Usage: sample-train-gmf RATINGS"
run "$T" --version
expect_rc "version exits 0" 0
expect_grep "version names the library and its features" out.txt "^sample-train-gmf [0-9.]+ \(cpu"
run "$T"
expect_rc "no ratings: exit 2" 2
run "$T" ratings.tsv --tables sparse
expect_rc "bad --tables: exit 2" 2

if [ ! -f "$ML" ]; then
    skip "MovieLens-1M smoke run" "$ML not found"
else
    run "$T" "$ML" --epochs 1 --max-users 200 --dim 16 --rank 4 -o gmf --write-test --json
    expect_rc "smoke: exit 0" 0
    cp out.txt train.json
    expect_exists "smoke: dense checkpoint" gmf.dense.safetensors
    expect_exists "smoke: FPD checkpoint" gmf.fpd.safetensors
    expect_grep "smoke: per-epoch lines with time and HR" err.txt "fpd +seed 1 epoch +1 +loss [0-9.]+ +[0-9.]+ s +HR@10 [0-9.]+"
    py_check "smoke: both runs reported, FPD smaller, HR in range" "
import json; r = json.load(open('train.json'))
assert r['schema'] == 'sample-train-gmf/1' and r['users'] == 200 and r['items'] == 3706, r
d, f = r['runs']
assert d['tables'] == 'dense' and f['tables'] == 'fpd', r['runs']
assert f['ratio'] > 1.5 and d['ratio'] == 1.0, r['runs']
for x in (d, f): assert 0.0 < x['hr10'] <= 1.0 and x['seconds_per_epoch'] > 0, x"
    run "$BUILD/fpd-inspect" gmf.fpd.safetensors
    expect_rc "smoke: fpd-inspect reads the FPD checkpoint" 0
    expect_grep "smoke: both tables are FPD" out.txt "item_embedding\.weight +3706 x 16"
    expect_grep "smoke: fit recorded" out.txt "fit init\+gmf"
    for kind in dense fpd; do
        run "$BUILD/fpd-eval" gmf.$kind.safetensors --ncf gmf.test.rating gmf.test.negative --json
        expect_rc "smoke: fpd-eval reads the $kind checkpoint" 0
        cp out.txt eval-$kind.json
        py_check "smoke: fpd-eval gives the trainer's HR@10 ($kind)" "
import json; r = json.load(open('train.json')); e = json.load(open('eval-$kind.json'))
run = [x for x in r['runs'] if x['tables'] == '$kind'][0]
assert abs(run['hr10'] - e['hr10']) < 1e-6 and abs(run['ndcg10'] - e['ndcg10']) < 1e-6, (run, e)"
    done
    # --write-test also writes the training positives: with the held-out items they are the
    # 200 users' ratings (ratings.tsv ids - 1), each once; fpd-eval --finetune reads them
    py_check "smoke: gmf.train.rating + gmf.test.rating = the users' ratings, disjoint, no temporary left" "
import glob
want = set()
for line in open('$ML').readlines()[1:]:
    u, i = line.split('	')[:2]
    if int(u) <= 200: want.add((int(u) - 1, int(i) - 1))
tr = [tuple(map(int, l.split('	')[:2])) for l in open('gmf.train.rating')]
te = [tuple(map(int, l.split('	')[:2])) for l in open('gmf.test.rating')]
assert len(te) == 200 and len(set(tr)) == len(tr) and not set(tr) & set(te), (len(te), len(tr))
assert set(tr) | set(te) == want, (len(set(tr) | set(te)), len(want))
assert not glob.glob('gmf.*.tmp-*'), glob.glob('gmf.*.tmp-*')"
    run "$BUILD/fpd-eval" gmf.fpd.safetensors --ncf gmf.test.rating gmf.test.negative --finetune gmf.train.rating --epochs 1 -o gmf-ft.safetensors --json
    expect_rc "smoke: fpd-eval --finetune on the trainer's gmf.train.rating: exit 0" 0
    py_check "smoke: the finetune read every training positive" "
import json; r = json.load(open('out.txt'))
assert r['finetune']['positives'] == sum(1 for _ in open('gmf.train.rating')), r['finetune']"
fi

# --free-coords: counted in the size (c (N + D) a table), written as free/1 with -o and
# read back by fpd-eval with the trainer's HR@10
if [ -f "$ML" ]; then
    run "$T" "$ML" --epochs 1 --max-users 200 --dim 16 --rank 4 --tables fpd --json
    cp out.txt plain.json
    run "$T" "$ML" --epochs 1 --max-users 200 --dim 16 --rank 4 --tables fpd --free-coords 2 --json
    expect_rc "free coords: exit 0" 0
    cp out.txt free.json
    py_check "free coords: params grow by c (N + D) per table" "
import json; a = json.load(open('plain.json'))['runs'][0]; b = json.load(open('free.json'))['runs'][0]
assert b['params'] - a['params'] == 2 * (200 + 16) + 2 * (3706 + 16), (a['params'], b['params'])
assert 0.0 < b['hr10'] <= 1.0, b"
    run "$T" "$ML" --epochs 1 --max-users 200 --dim 16 --rank 4 --tables fpd --free-coords 2 -o gmf2 --write-test --json
    expect_rc "free coords with -o: exit 0" 0
    cp out.txt free-o.json
    run "$BUILD/fpd-inspect" gmf2.fpd.safetensors --json
    expect_rc "free coords with -o: fpd-inspect reads the checkpoint" 0
    cp out.txt free-inspect.json
    py_check "free coords with -o: both tables stored with free/1, c = 2" "
import json; r = json.load(open('free-inspect.json'))
s = json.dumps(r)
assert s.count('\"free_coords\": 2') >= 2, s[:2000]"
    run "$BUILD/fpd-eval" gmf2.fpd.safetensors --ncf gmf2.test.rating gmf2.test.negative --json
    expect_rc "free coords with -o: fpd-eval reads the checkpoint" 0
    cp out.txt free-eval.json
    py_check "free coords with -o: fpd-eval gives the trainer's HR@10" "
import json; r = json.load(open('free-o.json'))['runs'][0]; e = json.load(open('free-eval.json'))
assert abs(r['hr10'] - e['hr10']) < 1e-6 and abs(r['ndcg10'] - e['ndcg10']) < 1e-6, (r, e)"
fi
run "$T" ratings.tsv --free-coords 65
expect_rc "free coords above --dim: exit 2" 2

# --free-init-scale S: E starts ~ normal(0, S^2) (fpd_gmf_train_params.free_init_scale)
# instead of 0. One epoch (the least --epochs allows) at --lr 1e-9 moves E by at most
# ~3 lr per Adam step (a few hundred steps here), so below 1e-5: the written E is its
# start. With S = 0.1 over the 2 (200 + 3706) = 7812 entries of both tables, the sample
# sd is within 5 standard errors (0.1 / sqrt(2 n) = 0.0008 each) of 0.1 and the mean
# within 5 x 0.1 / sqrt(n) = 0.0057 of 0; without the option E starts at 0 and stays
# below 1e-5.
if [ -f "$ML" ]; then
    for fi in 0.1 none; do
        extra="--free-init-scale $fi"
        [ "$fi" = none ] && extra=
        run "$T" "$ML" --epochs 1 --lr 1e-9 --max-users 200 --dim 16 --rank 4 --tables fpd --free-coords 2 $extra -o fis-$fi
        expect_rc "free init scale $fi: exit 0" 0
    done
    py_check "free init scale: E's sample sd 0.1 (mean 0) with --free-init-scale 0.1, E ~ 0 without" "
import sys; sys.path.insert(0, '$(dirname "$CHECK")')
import numpy as np
from fpd_check import read_st
def e(p):
    t = read_st(p)[0]
    return np.concatenate([t[k + '.fpd.free'].astype(np.float64).ravel() for k in ('user_embedding.weight', 'item_embedding.weight')]), t
x, t = e('fis-0.1.fpd.safetensors')
assert t['user_embedding.weight.fpd.free'].shape == (200, 2) and t['item_embedding.weight.fpd.free'].shape == (3706, 2)
assert x.size == 7812 and abs(x.std(ddof=1) - 0.1) < 5 * 0.1 / np.sqrt(2 * x.size), x.std(ddof=1)
assert abs(x.mean()) < 5 * 0.1 / np.sqrt(x.size), x.mean()
z, _ = e('fis-none.fpd.safetensors')
assert np.abs(z).max() < 1e-5, np.abs(z).max()"
fi
# P starts with orthonormal rows, the same in both tables; --free-proj fixed keeps it so
# through training (one epoch at --lr 1e-2), the default ('core': the cores' step, here
# --lr) moves it
if [ -f "$ML" ]; then
    for fp in fixed core; do
        run "$T" "$ML" --epochs 1 --lr 1e-2 --max-users 200 --dim 16 --rank 4 --tables fpd --free-coords 2 \
            --free-init-scale 0.1 --free-proj $fp -o fp-$fp
        expect_rc "free proj $fp: exit 0" 0
    done
    py_check "free proj: P P^T = I and equal in both tables with 'fixed'; moved with 'core'" "
import sys; sys.path.insert(0, '$(dirname "$CHECK")')
import numpy as np
from fpd_check import read_st
def p(path):
    t = read_st(path)[0]
    return [t[k + '.fpd.free_proj'].astype(np.float64) for k in ('user_embedding.weight', 'item_embedding.weight')]
pu, pi = p('fp-fixed.fpd.safetensors')
assert pu.shape == (2, 16) and np.array_equal(pu, pi), (pu, pi)
assert np.abs(pu @ pu.T - np.eye(2)).max() < 1e-6, pu @ pu.T
qu, qi = p('fp-core.fpd.safetensors')
assert np.abs(qu - pu).max() > 1e-3 and np.abs(qi - pi).max() > 1e-3, (np.abs(qu - pu).max(), np.abs(qi - pi).max())"
fi
run "$T" ratings.tsv --free-proj fixed
expect_rc "free proj without --free-coords: exit 2" 2
expect_grep "free proj without --free-coords: says so" err.txt "--free-proj .* goes with --free-coords"
run "$T" ratings.tsv --free-coords 2 --free-proj slow
expect_rc "free proj slow: exit 2" 2
expect_grep "free proj slow: names the option" err.txt "--free-proj expects 'fixed', 'core' or a step > 0, got 'slow'"
run "$T" ratings.tsv --free-init-scale 0.1
expect_rc "free init scale without --free-coords: exit 2" 2
expect_grep "free init scale without --free-coords: says so" err.txt "--free-init-scale .* goes with --free-coords"
for bad in -1 nan inf x; do
    run "$T" ratings.tsv --free-coords 2 --free-init-scale $bad
    expect_rc "free init scale $bad: exit 2" 2
    expect_grep "free init scale $bad: names the option" err.txt "--free-init-scale expects a number >= 0, got '$bad'"
done

# --model mlp / neumf: NCF's other models train (fpd_ncf_train) and are evaluated; the
# parameter counts are the tables' plus the layers' (NCF's 64 -> 32 -> 16 -> 8), and
# a written checkpoint gives fpd-eval the trainer's HR@10
if [ -f "$ML" ]; then
    for model in mlp neumf; do
        run "$T" "$ML" --model $model --epochs 1 --max-users 200 --dim 8 --rank 4 --cores 2 --json
        expect_rc "$model: exit 0" 0
        cp out.txt $model.json
        py_check "$model: parameter counts from the layers and tables, HR@10 in range" "
import json; r = json.load(open('$model.json'))
assert r['model'] == '$model' and r['layers'] == [64, 32, 16, 8], r
d, f = r['runs']
U, I = r['users'], r['items']
layers = 32 * 65 + 16 * 33 + 8 * 17
pred = 8 + (8 if '$model' == 'neumf' else 0) + 1
tables = (U + I) * 32 + ((U + I) * 8 if '$model' == 'neumf' else 0)
assert d['params'] == tables + layers + pred, (d['params'], tables + layers + pred)
assert f['params'] < d['params'] and f['ratio'] > 1.5, f
for x in (d, f): assert 0.0 < x['hr10'] <= 1.0, x"
    done
    run "$T" "$ML" --model neumf --tables fpd --epochs 1 --max-users 200 --dim 8 --rank 4 --cores 2 -o nm --write-test --json
    expect_rc "neumf with -o: exit 0" 0
    cp out.txt nm.json
    run "$BUILD/fpd-eval" nm.fpd.safetensors --ncf nm.test.rating nm.test.negative --json
    expect_rc "neumf with -o: fpd-eval reads the checkpoint" 0
    cp out.txt nm-eval.json
    py_check "neumf with -o: fpd-eval gives the trainer's HR@10" "
import json; r = json.load(open('nm.json'))['runs'][0]; e = json.load(open('nm-eval.json'))
assert abs(r['hr10'] - e['hr10']) < 1e-6 and abs(r['ndcg10'] - e['ndcg10']) < 1e-6, (r, e)"
    run "$BUILD/fpd-inspect" nm.fpd.safetensors
    expect_grep "neumf with -o: its four tables are FPD" out.txt "mlp_embedding_item\.weight +3706 x 32"
fi
run "$T" ratings.tsv --model xyz
expect_rc "--model unknown: exit 2" 2
run "$T" ratings.tsv --layers 63,8
expect_rc "--layers odd input: exit 2" 2

# --budget: the FPD tables' cores share one budget, split by the data per row
# (fpd_budget_split); with --alpha 0 the split is by row count, a closed form
if [ -f "$ML" ]; then
    run "$T" "$ML" --epochs 1 --max-users 200 --dim 16 --cores 2 --tables fpd --budget 40000 --alpha 0 --json
    expect_rc "budget: exit 0" 0
    cp out.txt budget.json
    # alpha 0: each seen row an equal share; all 200 users are seen but not all 3706 items
    # (rows never seen are worth nothing), so users get at least 40000 * 200 / 3906
    cp err.txt budget.err
    py_check "budget: alpha 0 gives every seen row an equal share; the shares add up to the budget" "
import re; m = re.search(r'alpha 0\): users (\d+) items (\d+)', open('budget.err').read())
u, i = int(m.group(1)), int(m.group(2))
assert 39998 <= u + i <= 40000 and u >= 40000 * 200 // 3906, (u, i)"
    py_check "budget: the FPD cores fit the budget" "
import json; r = json.load(open('budget.json'))['runs'][0]
assert r['params'] - 17 <= 40000 // 4, r['params']"
    run "$T" "$ML" --epochs 1 --max-users 200 --dim 16 --cores 2 --tables fpd --budget 40000 --json
    expect_rc "budget, alpha 0.5: exit 0" 0
    expect_grep "budget, alpha 0.5: users (seen ~165 times) get more than by row count" err.txt "users ([3-9][0-9]{3}|[1-9][0-9]{4}) items"
fi
run "$T" ratings.tsv --budget 12qq
expect_rc "--budget not a size: exit 2" 2
