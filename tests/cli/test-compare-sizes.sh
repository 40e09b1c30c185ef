# sample-compare-sizes: the equal-size comparison. A small run only (one epoch): on
# MovieLens-100K (GMF) and on a synthetic set in LightGCN's format (MF with BPR, full
# ranking), the program's output structure, every method's parameters recomputed from
# its reported configuration and held to the budget, the methods that cannot fit named,
# and the refusals. The accuracy figures take tens of minutes (make bench-accuracy).
T="$BUILD/sample-compare-sizes"

ML="$DATA/movielens-100k/u.data"

run "$T" --help
expect_rc "help exits 0" 0
expect_grep "help on stdout" out.txt "Usage: sample-compare-sizes"
run "$T" --version
expect_rc "version exits 0" 0
expect_grep "version names the library and its features" out.txt "^sample-compare-sizes [0-9.]+ \(cpu"
run "$T"
expect_rc "no dataset: exit 2" 2
run "$T" --gowalla . --methods dense,lsh
expect_rc "unknown method: exit 2" 2
expect_grep "unknown method named" err.txt "unknown method 'lsh'"
run "$T" --gowalla nowhere
expect_rc "missing data folder: exit 1" 1
expect_grep "missing file named" err.txt "nowhere/train.txt"

mkdir -p bad
printf '0 1 2\n1 x 3\n' > bad/train.txt
printf '0 3\n' > bad/test.txt
run "$T" --gowalla bad
expect_rc "malformed line: exit 1" 1
expect_grep "malformed line named" err.txt "bad/train.txt:2"

# synthetic LightGCN-format data: 50 users, 60 items, 8 training and 3 disjoint test items each
mkdir -p syn
awk 'BEGIN { for (u = 0; u < 50; u++) { a = u " "; b = u " ";
        for (j = 0; j < 8; j++) a = a " " (u * 7 + j * 3) % 60;
        for (j = 0; j < 3; j++) b = b " " (u * 7 + j * 3 + 1) % 60;
        print a > "syn/train.txt"; print b > "syn/test.txt" } }'
if command -v gnuplot >/dev/null 2>&1; then plot="--plot syn.png"; else plot=""; fi
run "$T" --gowalla syn --epochs 1 --seeds 1,2 --ratios 4,30 --json -o syn-out $plot
expect_rc "synthetic MF-BPR run: exit 0" 0
if [ -n "$plot" ]; then
    expect_grep "synthetic: PNG plot written" syn.png "PNG"
else
    skip "synthetic: PNG plot" "gnuplot not installed (make deps installs gnuplot-nox)"
fi
cp out.txt syn.json
expect_exists "synthetic: TSV written" syn-out.tsv
expect_exists "synthetic: JSON written" syn-out.json

check_budget='
import json, math, sys
r = json.load(open(sys.argv[1]))
U, I, D = r["users"], r["items"], r["dim"]
seeds = int(sys.argv[2])
assert r["schema"] == "sample-compare-sizes/1", r["schema"]
tab = r["table"]
assert tab[0]["method"] == "dense-full" and tab[0]["params"] == (U + I) * D, tab[0]
ratios = sorted({t["ratio"] for t in tab[1:]})
assert ratios == [float(x) for x in sys.argv[3].split(",")], ratios
assert [t["method"] for t in tab[1:12]] == ["dense", "int8", "int4", "int8-sym", "int4-sym", "hash", "qr", "qr-ordered",
                                           "fpd", "fpd-ordered", "fpd-free"], tab
# row-wise int8: d codes + F32 scale and bias; int4: ceil(d / 2) bytes + F16 scale and bias;
# the symmetric kinds (rows of free-sym/1): d or ceil(d / 2) bytes + an F16 scale;
# the size of a table in 4-byte words, rounded up
rb = {"int8": lambda d: d + 8, "int4": lambda d: -(-d // 2) + 4, "int8-sym": lambda d: d + 2,
      "int4-sym": lambda d: -(-d // 2) + 2}
words = lambda n, b: -(-n * b // 4)
m1 = "recall20" if r["dataset"] == "gowalla" else "hr10"
fitting = 0
for t in tab[1:]:
    bu, bi = math.floor(U * D / t["ratio"]), math.floor(I * D / t["ratio"])
    assert (t["budget_user"], t["budget_item"]) == (bu, bi), t
    if not t["fits"]:
        assert t["why"], t
        if t["method"] in rb:  # not even d = 1 fits
            assert words(U, rb[t["method"]](1)) > bu or words(I, rb[t["method"]](1)) > bi, t
        if t["method"] == "fpd-free":  # only where half the budget holds no free coordinate
            assert "c = 0" in t["why"] and min(math.floor(0.5 * bu / (U + D)), math.floor(0.5 * bi / (I + D))) == 0, t
        continue
    fitting += 1
    pu, pi = t["params_user"], t["params_item"]
    assert pu <= bu and pi <= bi and pu + pi == t["params"], t
    cfg = dict(kv.split("=") for kv in t["config"].split())
    if t["method"] == "dense":
        assert int(cfg["d"]) == D // t["ratio"] and (pu, pi) == (U * t["dim"], I * t["dim"]), t
    elif t["method"] in rb:  # the largest d <= D whose quantized rows fit both tables
        d, b = int(cfg["d"]), rb[t["method"]]
        assert t["dim"] == d and (pu, pi) == (words(U, b(d)), words(I, b(d))), t
        assert d == D or words(U, b(d + 1)) > bu or words(I, b(d + 1)) > bi, t
    elif t["method"] == "hash":
        mu, mi = map(int, cfg["m"].split("/"))
        assert (pu, pi) == (mu * D, mi * D) and mu == min(U, bu // D), t
    elif t["method"] in ("qr", "qr-ordered"):  # qr-ordered: plus its I32 permutation
        mu, mi = map(int, cfg["m"].split("/"))
        d, pw = int(cfg["d"]), t["method"] == "qr-ordered"
        assert (pu, pi) == ((-(-U // mu) + mu) * d + pw * U, (-(-I // mi) + mi) * d + pw * I), t
    else:
        assert int(cfg["k"]) in (2, 3) and t["dim"] == D, t
    if t["method"] == "fpd-free":  # c: the largest count within half of each budget, the smaller
        c = int(cfg["c"])
        assert c >= 1 and c == min(math.floor(0.5 * bu / (U + D)), math.floor(0.5 * bi / (I + D))), t
        assert pu >= c * (U + D) and pi >= c * (I + D), t
    assert 0.0 <= t[m1] <= 1.0 and t[m1 + "_sd"] >= 0.0, t
assert len(r["runs"]) == seeds * (fitting + 1), (len(r["runs"]), fitting)
for x in r["runs"]:
    assert 0.0 <= x[m1] <= 1.0 and math.isfinite(x["final_loss"]), x
    # int8/int4 runs also give the metric of the F32 table before quantization
    assert (m1 + "_f32" in x) == (x["method"] in rb), x
    if x["method"] in rb:
        assert 0.0 <= x[m1 + "_f32"] <= 1.0, x
'
py_plain "synthetic: structure, every size within its budget" "$check_budget" syn.json 2 4,30
# the popularity baseline against a plain-Python MostPop (counts of training positives,
# ties to the smaller id, the user's training items excluded; LightGCN's Recall/NDCG@20)
py_plain "synthetic: popularity baseline = a plain-Python MostPop" "
import json, math
tr = {int(l.split()[0]): [int(x) for x in l.split()[1:]] for l in open('syn/train.txt')}
te = {int(l.split()[0]): [int(x) for x in l.split()[1:]] for l in open('syn/test.txt')}
n_items = 1 + max(max(v) for v in list(tr.values()) + list(te.values()))
cnt = [0] * n_items
for v in tr.values():
    for i in v: cnt[i] += 1
order = sorted(range(n_items), key=lambda i: (-cnt[i], i))
rec = nd = 0.0
for u, t in te.items():
    top = [i for i in order if i not in set(tr[u])][:20]
    hits = [1 if i in set(t) else 0 for i in top]
    rec += sum(hits) / len(t)
    nd += sum(h / math.log2(k + 2) for k, h in enumerate(hits)) / sum(1 / math.log2(k + 2) for k in range(min(20, len(t))))
p = json.load(open('syn.json'))['popularity']
assert abs(p['recall20'] - rec / len(te)) < 1e-6 and abs(p['ndcg20'] - nd / len(te)) < 1e-6, (p, rec / len(te), nd / len(te))"
py_plain "synthetic: dense at 30x has d = floor(64 / 30) = 2" "
import json; t = json.load(open('syn.json'))['table']
d = [x for x in t if x['method'] == 'dense' and x['ratio'] == 30][0]
assert d['fits'] and d['dim'] == 2, d"
expect_grep "synthetic: TSV header" syn-out.tsv "^dataset	method	ratio	config	dim	params	budget	size_ratio	recall20	recall20_sd	ndcg20"

# --ablate: the cores' relative change from their initialization (recomputed: the FPD
# layers' initialization is the trainer's, so cores at a step of 1e-12 have not moved and
# putting them back gives the trained model's metric exactly), and E[i] P alone for
# fpd-free; dense runs carry no such field
run "$T" --gowalla syn --epochs 2 --seeds 1 --ratios 4 --methods dense,fpd-free --no-reference --ablate \
    --core-lr 1e-12 --json
expect_rc "ablate, cores held still: exit 0" 0
cp out.txt abl0.json
expect_grep "ablate: the line on stderr" err.txt "ablation: cores moved 0.0000 / 0.0000 .users / items"
run "$T" --gowalla syn --epochs 2 --seeds 1 --ratios 4 --methods fpd-ordered,fpd-free --no-reference --ablate --json
expect_rc "ablate: exit 0" 0
cp out.txt abl1.json
py_plain "ablate: cores that did not move give the trained metric back; trained cores moved; fields only on FPD runs" "
import json
r0 = json.load(open('abl0.json'))['runs']; r1 = json.load(open('abl1.json'))['runs']
d = [x for x in r0 if x['method'] == 'dense'][0]
assert 'core_move' not in d and 'recall20_cores_init' not in d and 'recall20_no_tt' not in d, d
f = [x for x in r0 if x['method'] == 'fpd-free'][0]
assert max(f['core_move']) < 1e-6 and f['recall20_cores_init'] == f['recall20'], f
assert 0.0 <= f['recall20_no_tt'] <= 1.0, f
for x in r1:
    assert min(x['core_move']) > 1e-3, x
    assert ('recall20_no_tt' in x) == (x['method'] == 'fpd-free'), x"

# --core-init-share S: fpd-free's FPD part starts at S of a row's variance. fpd_init
# realizes that variance exactly by scaling the same draw, every core by one factor, so
# ||G0|| goes as (S sigma^2)^(1 / 2k): the ratio of two runs' initial norms is
# (S1 / S2)^(1 / 2k), whatever the draw
run "$T" --gowalla syn --epochs 1 --seeds 1 --ratios 4 --methods fpd-free --no-reference --ablate \
    --core-init-share 0.02 --json
expect_rc "core-init-share 0.02: exit 0" 0
cp out.txt cis.json
py_plain "core-init-share: the initial cores' norm against the default's, (0.02 / 0.5)^(1 / 2k); recorded" "
import json
a = json.load(open('abl1.json')); b = json.load(open('cis.json'))
assert b['core_init_share'] == 0.02 and a['core_init_share'] == 0.5, (a['core_init_share'], b['core_init_share'])
x = [r for r in a['runs'] if r['method'] == 'fpd-free'][0]; y = b['runs'][0]
assert x['config'] == y['config'], (x['config'], y['config'])
k = int(y['config'].split('k=')[1].split()[0])
want = (0.02 / 0.5) ** (1.0 / (2 * k))
for t in range(2):
    got = y['core_init_norm'][t] / x['core_init_norm'][t]
    assert abs(got / want - 1) < 1e-4, (t, got, want)"
for v in 0 1 1.5; do
    run "$T" --gowalla syn --core-init-share $v
    expect_rc "core-init-share $v: exit 2" 2
    expect_grep "core-init-share $v: named" err.txt "core-init-share"
done

# --tune-core-lr: each FPD row's core step chosen on a validation split of the training
# positives (one held out per user with >= 2), the best kept and named in the config
run "$T" --gowalla syn --epochs 2 --seeds 1 --ratios 4 --methods dense,fpd-ordered,fpd-free --no-reference \
    --tune-core-lr 3e-2,1e-3 --json
expect_rc "tune-core-lr: exit 0" 0
cp out.txt tune.json
expect_grep "tune-core-lr: the validation split's size (400 - 50 training)" err.txt "350 training, 50 held out"
py_plain "tune-core-lr: FPD rows keep the best validation step, dense rows are not tuned" "
import json
t = json.load(open('tune.json'))['table']
fpd = [x for x in t if x['method'].startswith('fpd')]
assert len(fpd) == 2, t
for x in fpd:
    v = x['validation']
    assert [y['core_lr'] for y in v] == [3e-2, 1e-3], v
    best = max(v, key=lambda y: y['recall20'])  # ties: the first listed
    assert x['core_lr'] == best['core_lr'] and x['config'].endswith('clr=%g' % best['core_lr']), x
d = [x for x in t if x['method'] == 'dense'][0]
assert 'validation' not in d and 'clr=' not in d['config'], d"
run "$T" --gowalla syn --tune-core-lr 1e-2,0
expect_rc "tune-core-lr 0: exit 2" 2
expect_grep "tune-core-lr: bad value named" err.txt "tune-core-lr expects up to 8 numbers > 0"

# --tune-free-share, --tune-free-proj: fpd-free's share and P's step chosen with the core
# step, every triple tried on the validation split; the kept row has the sizes of the
# chosen share
run "$T" --gowalla syn --epochs 2 --seeds 1 --ratios 4 --methods fpd-free --no-reference \
    --tune-core-lr 3e-2,1e-3 --tune-free-share 0.3,0.6 --tune-free-proj fixed,core --json
expect_rc "tune-free-share: exit 0" 0
cp out.txt tunes.json
py_plain "tune-free-share: every (share, P, step) triple tried, the best kept with its share's c" "
import json, math
r = json.load(open('tunes.json'))
x = [y for y in r['table'] if y['method'] == 'fpd-free'][0]
v = x['validation']
assert [(y['free_share'], y['free_proj'], y['core_lr']) for y in v] == [
    (s, p, l) for s in (0.3, 0.6) for p in ('fixed', 'core') for l in (3e-2, 1e-3)], v
best = max(v, key=lambda y: y['recall20'])  # ties: the first tried
assert (x['free_share'], x['free_proj'], x['core_lr']) == (best['free_share'], best['free_proj'], best['core_lr']), x
c = min(math.floor(best['free_share'] * x['budget_user'] / (r['users'] + 64)),
        math.floor(best['free_share'] * x['budget_item'] / (r['items'] + 64)))
assert ' c=%d ' % c in x['config'] and x['config'].endswith(
    'clr=%g share=%g P=%s' % (best['core_lr'], best['free_share'], best['free_proj'])), (c, x)"
# a share that gives the sizes of an earlier one (here c = 3 for both) is not trained again
run "$T" --gowalla syn --epochs 1 --seeds 1 --ratios 4 --methods fpd-free --no-reference \
    --tune-core-lr 1e-3 --tune-free-share 0.5,0.55 --json
expect_rc "tune-free-share, same sizes: exit 0" 0
expect_grep "tune-free-share, same sizes: named" err.txt "share 0.55 gives the sizes of share 0.5 .*c=3.*not trained again"
cp out.txt same.json
py_plain "tune-free-share, same sizes: one validation run" "
import json
x = [y for y in json.load(open('same.json'))['table'] if y['method'] == 'fpd-free'][0]
assert [y['free_share'] for y in x['validation']] == [0.5] and ' c=3 ' in x['config'], x"
run "$T" --gowalla syn --tune-free-share 0.5,1.5
expect_rc "tune-free-share 1.5: exit 2" 2
expect_grep "tune-free-share: bad value named" err.txt "tune-free-share: 1.5 is not in"
run "$T" --gowalla syn --tune-free-proj fixed,slow
expect_rc "tune-free-proj slow: exit 2" 2
expect_grep "tune-free-proj: bad value named" err.txt "tune-free-proj expects 'fixed', 'core' or a step > 0, got 'slow'"

# --free-dtype int4: fpd-free's E sized as row-wise int4 rows (ceil(c / 2) + 4 bytes a row,
# in 4-byte words rounded up) plus P in F32, and quantized after training
run "$T" --gowalla syn --epochs 1 --seeds 1 --ratios 4 --methods fpd-free --free-dtype int4 --no-reference --json
expect_rc "free-dtype int4: exit 0" 0
cp out.txt q4.json
py_plain "free-dtype int4: c the largest whose int4 E and F32 P fit half of each budget; E quantized" "
import json, math
r = json.load(open('q4.json'))
x = [y for y in r['table'] if y['method'] == 'fpd-free'][0]
U, I, D = r['users'], r['items'], r['dim']
fp = lambda n, c: -(-n * (-(-c // 2) + 4) // 4) + c * D
big = lambda n, b: max(c for c in range(0, D + 1) if c == 0 or fp(n, c) <= math.floor(0.5 * b))
c = min(big(U, x['budget_user']), big(I, x['budget_item']))
assert c == 4 and ' c=4 E=int4' in x['config'] and x['free_dtype'] == 'int4', (c, x)
assert x['params_user'] >= fp(U, c) and x['params_item'] >= fp(I, c), x
assert x['params_user'] <= x['budget_user'] and x['params_item'] <= x['budget_item'], x
run = [y for y in r['runs'] if y['method'] == 'fpd-free'][0]
assert 0.0 <= run['recall20_f32'] <= 1.0 and 0.0 <= run['recall20'] <= 1.0, run"
run "$T" --gowalla syn --free-dtype int2
expect_rc "free-dtype int2: exit 2" 2
expect_grep "free-dtype: bad value named" err.txt "free-dtype expects f32, int8, int4, int8-sym or int4-sym, got 'int2'"

# --merge: a grid run in two parts gives the table of one run
run "$T" --gowalla syn --epochs 1 --seeds 1 --ratios 10 --no-reference -o part
expect_rc "synthetic: second part (10x, no reference): exit 0" 0
run "$T" --merge part.tsv,syn-out.tsv -o merged
expect_rc "merge: exit 0" 0
expect_lines "merge: header, reference, 3 ratios x 11 methods" merged.tsv 35
expect_grep "merge: the reference row kept" merged.tsv "^gowalla	dense-full	1	"
sed -n 14p merged.tsv > line9.txt
expect_grep "merge: rows sorted by ratio (10x after 4x)" line9.txt "^gowalla	dense	10	"
# --popularity: the baseline's line in a merged plot (the .gp is written before gnuplot
# runs, so it is checked with or without gnuplot)
run "$T" --merge part.tsv,syn-out.tsv --popularity 0.0416 -o mergedp --plot mergedp.png
expect_grep "merge --popularity: the dotted line in the plot" mergedp.png.gp "0.04160 with lines dt 3"
run "$T" --gowalla syn --popularity 0.04
expect_rc "popularity without --merge: exit 2" 2
expect_grep "popularity without --merge: says so" err.txt "popularity goes with --merge"
run "$T" --merge part.tsv
expect_rc "merge without the reference row: exit 1" 1
expect_grep "merge: missing reference named" err.txt "dense-full"

if [ ! -f "$ML" ]; then
    skip "MovieLens-100K run" "$ML not found"
else
    run "$T" --movielens "$ML" --epochs 1 --seeds 1 --ratios 10,100 --json -o ml
    expect_rc "MovieLens-100K GMF run: exit 0" 0
    cp out.txt ml.json
    py_plain "MovieLens-100K: structure, every size within its budget" "$check_budget" ml.json 1 10,100
    py_plain "MovieLens-100K: dense cannot fit 100x (d < 1), named" "
import json; r = json.load(open('ml.json'))
assert r['users'] == 943 and r['items'] == 1682, r
d = [x for x in r['table'] if x['method'] == 'dense' and x['ratio'] == 100][0]
assert not d['fits'] and 'd = floor' in d['why'], d"
    py_plain "MovieLens-100K: fpd-ordered cannot fit 100x: its I32 permutation (943 words) exceeds the budget (603)" "
import json; r = json.load(open('ml.json'))
x = [x for x in r['table'] if x['method'] == 'fpd-ordered' and x['ratio'] == 100][0]
assert x['budget_user'] == 603 and not x['fits'] and 'permutation alone' in x['why'] and '943/1682' in x['why'], x"
    # --order-cost vocabulary: the order lives in the id vocabulary, the layer stores no
    # permutation; at 100x fpd-ordered then fits with exactly plain fpd's shape and size
    run "$T" --movielens "$ML" --epochs 1 --seeds 1 --ratios 100 --methods fpd,fpd-ordered \
        --order-cost vocabulary --no-reference --json
    expect_rc "MovieLens-100K --order-cost vocabulary at 100x: exit 0" 0
    cp out.txt vocab.json
    py_plain "MovieLens-100K: --order-cost vocabulary: fpd-ordered at 100x fits with fpd's shape and size (no permutation counted), said in config and JSON" "
import json; r = json.load(open('vocab.json'))
f = [x for x in r['table'] if x['method'] == 'fpd' and x['ratio'] == 100][0]
o = [x for x in r['table'] if x['method'] == 'fpd-ordered' and x['ratio'] == 100][0]
assert o['fits'] and o['params'] == f['params'] <= o['budget'] == 1679, (f, o)
assert o['config'] == f['config'] + ' order=vocab' and o['order_cost'] == 'vocabulary' and 'order_cost' not in f, (f, o)"
    # qr-ordered: QR over ordered ids; stored, its I32 permutation comes out of the budget
    # first (10x users: 6035 - 943 words leave m = 64 at d = 64: ceil(943/64) + 64 = 79
    # rows of 64), at 100x nothing fits beside it; in the vocabulary it is QR's own shape
    run "$T" --movielens "$ML" --epochs 1 --seeds 1 --ratios 10,100 --methods qr,qr-ordered --no-reference --json
    expect_rc "MovieLens-100K qr-ordered: exit 0" 0
    cp out.txt qro.json
    run "$T" --movielens "$ML" --epochs 1 --seeds 1 --ratios 100 --methods qr,qr-ordered --order-cost vocab \
        --no-reference --json
    expect_rc "MovieLens-100K qr-ordered, --order-cost vocab (the short form): exit 0" 0
    cp out.txt qrv.json
    py_plain "MovieLens-100K: qr-ordered sized beside its permutation (largest m recomputed), 100x does not fit; vocabulary: QR's shape" "
import json, math
def best(rows, d, budget):  # the largest remainder count m whose (ceil(rows/m) + m) d fits
    return max([m for m in range(1, rows + 1) if (math.ceil(rows / m) + m) * d <= budget], default=None)
r = json.load(open('qro.json'))
x = [x for x in r['table'] if x['method'] == 'qr-ordered' and x['ratio'] == 10][0]
mu, mi = best(943, 64, 6035 - 943), best(1682, 64, x['budget_item'] - 1682)
assert x['fits'] and x['config'] == 'd=64 m=%d/%d' % (mu, mi) and mu == 64, (x, mu, mi)
assert x['params_user'] == (math.ceil(943 / mu) + mu) * 64 + 943 and x['order_cost'] == 'stored', x
y = [x for x in r['table'] if x['method'] == 'qr-ordered' and x['ratio'] == 100][0]
assert not y['fits'] and 'beside the row permutation' in y['why'], y
v = json.load(open('qrv.json'))
q = [x for x in v['table'] if x['method'] == 'qr' and x['ratio'] == 100][0]
o = [x for x in v['table'] if x['method'] == 'qr-ordered' and x['ratio'] == 100][0]
assert o['config'] == q['config'] + ' order=vocab' and o['params'] == q['params'] and o['order_cost'] == 'vocabulary', (q, o)"
    run "$T" --movielens "$ML" --order-cost free
    expect_rc "--order-cost free: usage error, exit 2" 2
    expect_grep "--order-cost free: says what it expects" err.txt "order-cost expects stored or vocabulary, got 'free'"
    # fpd-free with int4 E at 30x (users: budget 2011 words, 0.9 of it 1809): c = 4 gives E
    # ceil(943 x 6 / 4) = 1415 words and P 4 x 64 = 256 (c = 5: 7 bytes a row, 1971 words);
    # items the same c; the 943-word permutation then exceeds the 2011 - 1671 = 340 left. With
    # --tune-free-share no share of the grid fits, and the row says so (not the default 0.5's why)
    run "$T" --movielens "$ML" --epochs 1 --seeds 1 --ratios 30 --methods fpd-free --free-dtype int4 \
        --tune-free-share 0.8,0.9 --no-reference --json
    expect_rc "MovieLens-100K fpd-free int4 at 30x: exit 0 (does not fit is a result)" 0
    cp out.txt q4.json
    py_plain "MovieLens-100K: fpd-free int4 at 30x: no share of 0.8, 0.9 fits (0.9: E with c = 4 and the permutation leave no budget), named" "
import json; r = json.load(open('q4.json'))
x = [x for x in r['table'] if x['method'] == 'fpd-free' and x['ratio'] == 30][0]
assert x['budget_user'] == 2011 and not x['fits'] and 'E, P (c = 4)' in x['why'] and '943/1682' in x['why'], x
assert x['why'].startswith('no share of --tune-free-share fits (0.9: the row permutation'), x"
    py_plain "MovieLens-100K: int8 and int4 cannot fit 100x (2.56 bytes a row < a row's scale and bias), named" "
import json; r = json.load(open('ml.json'))
q = [x for x in r['table'] if x['method'] in ('int8', 'int4') and x['ratio'] == 100]
assert len(q) == 2 and all(not x['fits'] and 'exceeds the budget' in x['why'] for x in q), q
assert '(9 bytes)' in q[0]['why'] and '(5 bytes)' in q[1]['why'], q"
fi
