# fpd-convert: FPD -> dense -> npy -> safetensors keeps every value bit for bit,
# FPD -> TT-Rec layout -> FPD gives back the same file, usage errors exit 2 and write
# nothing, and the Python interop check (tests/python/test_interop.py: the safetensors
# package + NumPy reconstruction against the C look-ups) when numpy and safetensors
# are importable.
C="$BUILD/fpd-compress"
V="$BUILD/fpd-convert"
NCF="$DATA/ncf/ncf_gmf8_ml1m.safetensors"
SAMPLE="$ROOT/samples/glove-10k.safetensors"

run "$V" --help
expect_rc "help exits 0" 0
expect_grep "help on stdout" out.txt "^Usage: fpd-convert IN -o OUT"
run "$V" --version
expect_rc "version exits 0" 0
expect_grep "version lists features" out.txt "^fpd-convert [0-9.]+ \(cpu"

run "$C" "$SAMPLE" -o g.fpd.safetensors --rank 8 --epochs 0 -q
expect_rc "setup: compress the sample" 0

# ---- FPD -> dense -> npy -> safetensors, bit for bit ----
run "$V" g.fpd.safetensors -o g.dense.safetensors
expect_rc "fpd -> dense: exit 0" 0
expect_grep "fpd -> dense: says it reconstructed" out.txt "word_embeddings.weight +F32 +10000x100 .*reconstructed from FPD"
run "$V" g.dense.safetensors -o g.npy --tensor word_embeddings.weight
expect_rc "dense -> npy: exit 0" 0
run "$V" g.npy -o g.back.safetensors --tensor word_embeddings.weight
expect_rc "npy -> safetensors: exit 0" 0
run "$V" g.back.safetensors -o g2.npy
expect_rc "safetensors -> npy (only tensor, no --tensor): exit 0" 0
# A one-tensor file ends with the tensor's bytes (safetensors: the data section; .npy: after the header).
tail -c 4000000 g.dense.safetensors > a.bin
tail -c 4000000 g.npy > b.bin
tail -c 4000000 g.back.safetensors > c.bin
if cmp -s a.bin b.bin && cmp -s a.bin c.bin; then _report ok "dense -> npy -> safetensors: 4,000,000 bytes identical"
else _report "not ok" "dense -> npy -> safetensors: 4,000,000 bytes identical"; fi
if cmp -s g.npy g2.npy; then _report ok "npy -> safetensors -> npy: identical files"
else _report "not ok" "npy -> safetensors -> npy: identical files"; fi
run "$V" g.back.safetensors -o g.dense2.safetensors --force
run "$BUILD/fpd-inspect" g.back.safetensors --json
expect_grep "npy -> safetensors: tensor named by --tensor" out.txt "\"word_embeddings.weight\""
py_check "fpd -> dense: NumPy reads the same values from every file" "
import numpy as np, json, struct
def st(path):
    f = open(path, 'rb'); n = struct.unpack('<Q', f.read(8))[0]; h = json.loads(f.read(n)); d = f.read()
    t = h['word_embeddings.weight']; b, e = t['data_offsets']
    return np.frombuffer(d[b:e], dtype=np.float32).reshape(t['shape']), h.get('__metadata__', {})
a, ma = st('g.dense.safetensors'); b = np.load('g.npy'); c, _ = st('g.back.safetensors')
assert a.shape == b.shape == c.shape == (10000, 100)
assert a.tobytes() == b.tobytes() == c.tobytes()
assert 'fpd.version' not in ma and not any(k.startswith('fpd.table.') for k in ma), ma
assert ma.get('vocab') == 'glove-10k.vocab.txt', ma  # the input's own metadata is kept"

# ---- dtypes: source dtype by default, --dtype on request, BF16 refused for .npy ----
run "$V" g.fpd.safetensors -o g16.npy --tensor word_embeddings.weight --dtype F16
expect_rc "fpd -> npy --dtype F16: exit 0" 0
run "$V" g.fpd.safetensors -o gbf.npy --tensor word_embeddings.weight --dtype BF16
expect_rc "BF16 to .npy: exit 1" 1
expect_grep "BF16 to .npy: says to use --dtype F32" err.txt "numpy has no bfloat16\); add --dtype F32"
expect_absent "BF16 to .npy: nothing written" gbf.npy
# a dense checkpoint to dense: --dtype (for reconstructed tables) has nothing to act on
# and says so instead of silently copying F32
run "$V" g.dense.safetensors -o gdbf.safetensors --to dense --dtype BF16
expect_rc "dense -> dense --dtype BF16: exit 0 (copied)" 0
expect_grep "dense -> dense --dtype BF16: warns that nothing changes" err.txt \
    "holds no FPD table to reconstruct: --dtype BF16 changes nothing"
# a dense checkpoint --to fpd: points to fpd-compress
run "$V" g.dense.safetensors -o gx.safetensors --to fpd
expect_rc "dense -> fpd: exit 1" 1
expect_grep "dense -> fpd: names fpd-compress" err.txt "use fpd-compress --encoding fpd"
expect_absent "dense -> fpd: nothing written" gx.safetensors
py_check "fpd -> npy F16: the F32 reconstruction rounded once" "
import numpy as np
a = np.load('g.npy'); h = np.load('g16.npy')
assert h.dtype == np.float16 and np.array_equal(a.astype(np.float16), h)"

# ---- FPD -> TT-Rec -> FPD: the same file, byte for byte ----
run "$V" g.fpd.safetensors -o g.tt.safetensors --to ttrec --json
expect_rc "fpd -> ttrec: exit 0" 0
expect_grep "fpd -> ttrec: cores named for a TTEmbeddingBag at module word_embeddings" out.txt "\"word_embeddings.tt_cores.0\""
run "$V" g.tt.safetensors -o g.fpd2.safetensors --to fpd
expect_rc "ttrec -> fpd: exit 0" 0
if cmp -s g.fpd.safetensors g.fpd2.safetensors; then _report ok "fpd -> ttrec -> fpd: identical file"
else _report "not ok" "fpd -> ttrec -> fpd: identical file"; fi
run "$V" g.tt.safetensors -o g.ttdense.safetensors
expect_rc "ttrec -> dense: exit 0" 0
tail -c 4000000 g.ttdense.safetensors > d.bin
if cmp -s a.bin d.bin; then _report ok "ttrec -> dense equals fpd -> dense"; else _report "not ok" "ttrec -> dense equals fpd -> dense"; fi
run "$C" "$SAMPLE" -o g2.fpd.safetensors --rank 4 --terms 2 --epochs 0 -q
run "$V" g2.fpd.safetensors -o g2.tt.safetensors --to ttrec
expect_rc "p = 2 to ttrec: exit 1" 1
expect_grep "p = 2 to ttrec: says why" err.txt "p = 2 terms; the TT-Rec layout holds one tensor train"
expect_absent "p = 2 to ttrec: nothing written" g2.tt.safetensors

if [ -f "$NCF" ]; then
    run "$C" "$NCF" -o ncf.fpd.safetensors --rank 4 --epochs 0 -q
    run "$V" ncf.fpd.safetensors -o ncf.dense.safetensors --json
    expect_rc "ncf: fpd -> dense: exit 0" 0
    expect_grep "ncf: prediction.bias copied" out.txt "\"from\": \"copied\""
    run "$V" ncf.fpd.safetensors -o ncf.tt.safetensors --to ttrec
    run "$V" ncf.tt.safetensors -o ncf.back.safetensors --to fpd
    if cmp -s ncf.fpd.safetensors ncf.back.safetensors; then _report ok "ncf: fpd -> ttrec -> fpd identical"
    else _report "not ok" "ncf: fpd -> ttrec -> fpd identical"; fi
    run "$V" ncf.dense.safetensors -o u.npy
    expect_rc "ncf: several tensors and no --tensor: exit 1" 1
    expect_grep "ncf: says to choose one" err.txt "choose one with --tensor NAME"
else
    skip "ncf conversions" "$NCF not found"
fi

# ---- usage errors ----
run "$V" g.fpd.safetensors
expect_rc "no -o: exit 2" 2
run "$V" g.fpd.safetensors -o x.safetensors --to onnx
expect_rc "unknown --to: exit 2" 2
expect_grep "unknown --to: lists the formats" err.txt "--to must be dense, safetensors, npy, ttrec or fpd"
run "$V" g.fpd.safetensors -o g.dense.safetensors
expect_rc "existing OUT: exit 2" 2
expect_grep "existing OUT: says --force" err.txt "use --force"
run "$V" g.fpd.safetensors -o ./g.fpd.safetensors --force
expect_rc "OUT is IN: exit 2" 2
run "$V" missing.safetensors -o x.safetensors
expect_rc "missing input: exit 1" 1
expect_grep "missing input: named" err.txt "^fpd-convert: error: missing.safetensors: no such file"
run "$V" g.fpd.safetensors -o x.npy --to dense
expect_rc ".npy OUT with --to dense: exit 2" 2
run "$V" g.npy -o x.safetensors --to ttrec
expect_rc ".npy to ttrec: exit 2" 2
run "$V" g.dense.safetensors -o x.safetensors --to fpd
expect_rc "no TT-Rec table: exit 1" 1
run "$V" g.dense.safetensors -o x.npy --tensor nope
expect_rc "unknown tensor: exit 1" 1
expect_grep "unknown tensor: named" err.txt "no tensor or table named 'nope'"
expect_absent "errors: nothing written" x.safetensors
expect_absent "errors: nothing written (npy)" x.npy
expect_no_temp "errors: no temporary files" .

# ---- "-": standard input and output (issue 13) ----
"$V" - -o - <g.fpd.safetensors >piped.safetensors 2>err.txt
rc=$?
expect_rc "stdin -> stdout: exit 0" 0
if cmp -s piped.safetensors g.dense.safetensors; then _report ok "stdin -> stdout: the same bytes as a file conversion"
else _report "not ok" "stdin -> stdout: the same bytes as a file conversion" "$(head -c 300 err.txt)"; fi
expect_absent "-o -: no file named '-'" ./-
"$V" g.fpd.safetensors -o - --to npy >piped.npy 2>err.txt
rc=$?
expect_rc "to npy on stdout: exit 0" 0
if cmp -s piped.npy g.npy; then _report ok "to npy on stdout: the same bytes"; else _report "not ok" "to npy on stdout: the same bytes"; fi
run "$V" g.fpd.safetensors -o - --json
expect_rc "-o - with --json: exit 2" 2
run "$V" g.fpd.safetensors -o g.json.safetensors --json
expect_rc "json: exit 0" 0
py_check "json: schema 2 with bytes_after" "
import json; r = json.load(open('out.txt'))
assert r['schema'] == 'fpd-convert/2' and r['bytes_after'] == sum(t['bytes'] for t in r['tensors']), r"

# ---- Python interop (safetensors package + NumPy against the C look-ups) ----
if python3 -c 'import numpy, safetensors' >/dev/null 2>&1; then
    python3 "$ROOT/tests/python/test_interop.py" "$BUILD" "$ROOT" "$NCF" >py.txt 2>&1
    py_results python py.txt $? "interop"
else
    skip "python interop" "python3 with numpy and safetensors not available"
fi

# ---- --vocabulary-out: the row permutation folded into the id vocabulary ----
# A clustered fit with free coordinates (row_perm and free/1): the output has no row_perm,
# the map's rows are the input's row_perm (read independently), E moved with its ids, and
# each id's row in the input equals its mapped row in the output (reconstructed, F32 rounding)
run "$C" "$SAMPLE" -o p.fpd.safetensors --encoding fpd --rank 8 --epochs 0 --als 0 --cluster-rows --free-coords 2 -q
expect_rc "vocabulary setup: a clustered fit with free coordinates" 0
run "$V" p.fpd.safetensors --to fpd -o v.safetensors --vocabulary-out map.tsv --json
expect_rc "vocabulary: exit 0" 0
expect_grep "vocabulary: JSON names the map" out.txt '"vocabulary": "map.tsv"'
expect_grep "vocabulary: the map's header" map.tsv "^table	id	row$"
expect_lines "vocabulary: one line an id (10,000) and the header" map.tsv 10001
run "$V" v.safetensors -o v.npy -t word_embeddings.weight -q
run "$V" p.fpd.safetensors -o p.npy -t word_embeddings.weight -q
py_check "vocabulary: map = the input's row_perm, no row_perm out, E moved, rows equal (fpd_check read_st)" "
import json, sys; sys.path.insert(0, '$(dirname "$CHECK")')
import numpy as np
from fpd_check import read_st
t = 'word_embeddings.weight'
a, ma = read_st('p.fpd.safetensors')
b, mb = read_st('v.safetensors')
perm = np.asarray(a[t + '.fpd.row_perm']).astype(np.int64)
m = np.loadtxt('map.tsv', dtype=str, skiprows=1, delimiter='\t')
assert (m[:, 0] == t).all() and (m[:, 1].astype(int) == np.arange(10000)).all()
rows = m[:, 2].astype(np.int64)
assert (rows == perm).all(), 'map rows differ from row_perm'
assert t + '.fpd.row_perm' not in b, sorted(b)
meta = json.loads(mb['fpd.table.' + t])
assert meta['rows'] == perm.max() + 1, (meta['rows'], perm.max())
for q in range(3):
    assert np.array_equal(a[t + '.fpd.core%d' % q], b[t + '.fpd.core%d' % q])
assert np.array_equal(a[t + '.fpd.free_proj'], b[t + '.fpd.free_proj'])
e2 = np.zeros((meta['rows'], 2), np.float32); e2[perm] = a[t + '.fpd.free']
assert np.array_equal(b[t + '.fpd.free'], e2)
x, y = np.load('p.npy'), np.load('v.npy')
assert np.abs(x - y[perm]).max() <= 1e-6 * np.abs(x).max(), np.abs(x - y[perm]).max()"
# padded rows: 997 ids ordered over a 2-core row shape of more rows; the output's table
# has rows max(row_perm) + 1 > 997, and looking up the mapped rows gives the input's rows
awk 'BEGIN { for (u = 0; u < 997; u++) for (j = 0; j < 4; j++) print u "\t" ((u % 2) * 10 + (u * 7 + j * 3) % 10) }' >x.tsv
run "$C" --init normal:0.1 --rows 997 --dim 8 --rank 2 --cores 2 -o o.safetensors --init-order x.tsv -q
expect_rc "vocabulary setup: an ordered init of 997 rows" 0
run "$V" o.safetensors --to fpd -o ov.safetensors --vocabulary-out omap.tsv -q
expect_rc "vocabulary, padded: exit 0" 0
run "$V" o.safetensors -o o.npy -q
run "$V" ov.safetensors -o ov.npy -q
py_check "vocabulary, padded: rows max(row_perm) + 1, mapped rows equal the input's" "
import numpy as np
m = np.loadtxt('omap.tsv', dtype=str, skiprows=1, delimiter='\t')
rows = m[:, 2].astype(np.int64)
x, y = np.load('o.npy'), np.load('ov.npy')
assert x.shape == (997, 8) and y.shape == (rows.max() + 1, 8), (x.shape, y.shape)
assert len(set(rows.tolist())) == 997
assert np.abs(x - y[rows]).max() <= 1e-6 * np.abs(x).max()"
# refusals: nothing to fold, wrong mode, an existing map, the map as output; nothing written
run "$V" g.fpd.safetensors --to fpd -o nv.safetensors --vocabulary-out nmap.tsv
expect_rc "vocabulary without a row_perm: exit 1" 1
expect_grep "vocabulary without a row_perm: says so" err.txt "holds no FPD table with a row permutation \(T.fpd.row_perm\): nothing to fold"
expect_absent "vocabulary without a row_perm: no output" nv.safetensors
expect_absent "vocabulary without a row_perm: no map" nmap.tsv
run "$V" p.fpd.safetensors -o nv.safetensors --vocabulary-out nmap.tsv
expect_rc "vocabulary without --to fpd: exit 2" 2
expect_grep "vocabulary without --to fpd: says so" err.txt "vocabulary-out goes with --to fpd"
run "$V" p.fpd.safetensors --to fpd -o nv.safetensors --vocabulary-out map.tsv
expect_rc "vocabulary: an existing map without --force: exit 2" 2
expect_absent "vocabulary: an existing map: no output" nv.safetensors
run "$V" p.fpd.safetensors --to fpd -o nv.safetensors --vocabulary-out nv.safetensors
expect_rc "vocabulary: the map as the output: exit 2" 2
# the same file spelt otherwise, even with --force (once overwrote the checkpoint with the map)
run "$V" p.fpd.safetensors --to fpd -o nv.safetensors --vocabulary-out ./nv.safetensors --force
expect_rc "vocabulary: the map as the output (./OUT, --force): exit 2" 2
expect_grep "vocabulary: the map as the output (./OUT): says so" err.txt "is the output too"
expect_absent "vocabulary: the map as the output: nothing written" nv.safetensors
