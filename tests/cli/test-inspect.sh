# fpd-inspect: size reports of dense and FPD checkpoints, from the header alone.
I="$BUILD/fpd-inspect"

run "$I" --help
expect_rc "help exits 0" 0
expect_grep "help on stdout" out.txt "fpd-inspect"

run "$I" "$ROOT/samples/glove-10k.safetensors"
expect_rc "sample: exit 0" 0
expect_grep "sample: lists the table with dtype, shape and bytes" out.txt "word_embeddings\.weight +F32 +\[10000, 100\] +4000000"

run "$I" "$ROOT/samples/glove-10k.safetensors" --json
expect_rc "sample json: exit 0" 0
py_check "sample json: schema, tensors, totals" "
import json; r = json.load(open('out.txt'))
assert r['schema'] == 'fpd-inspect/2' and r['tables'] == [] and r['input'].endswith('glove-10k.safetensors')
t = r['tensors'][0]
assert t['name'] == 'word_embeddings.weight' and t['dtype'] == 'F32' and t['shape'] == [10000, 100] and t['bytes'] == 4000000
assert r['totals']['bytes_after'] == 4000000 and r['totals']['bytes_before'] == 4000000"

run "$I" missing.safetensors
expect_rc "missing file: exit 1" 1
expect_grep "missing file: one clear line" err.txt "^fpd-inspect: error: missing.safetensors: "
run "$I" "$ROOT/samples/glove-10k.safetensors" --bogus
expect_rc "unknown flag: exit 2" 2
run "$I"
expect_rc "no file: exit 2" 2

# A 4 GiB tensor in a sparse file: inspect reads only the header, so it answers
# without touching (or needing) the data.
if have_python_numpy; then
    python3 -c "
import json, struct
h = json.dumps({'big.weight': {'dtype': 'F32', 'shape': [16777216, 64], 'data_offsets': [0, 4294967296]}}).encode()
h += b' ' * (-len(h) % 8)
with open('big.safetensors', 'wb') as f:
    f.write(struct.pack('<Q', len(h))); f.write(h); f.truncate(8 + len(h) + 4294967296)"
    run "$I" big.safetensors
    expect_rc "sparse 4 GiB file: exit 0" 0
    expect_grep "sparse 4 GiB file: reports the tensor" out.txt "big\.weight +F32 +\[16777216, 64\] +4294967296"
else
    skip "sparse 4 GiB file" "python3 not available"
fi

# FPD tables are checked against their cores (header only)
"$BUILD/fpd-compress" "$ROOT/samples/glove-10k.safetensors" -o fpd.safetensors --rank 4 --epochs 0 -q
if have_python_numpy; then
    python3 -c "
import json, struct
d = open('fpd.safetensors', 'rb').read(); n = struct.unpack('<Q', d[:8])[0]; h = json.loads(d[8:8 + n])
def save(name, hdr):
    b = json.dumps(hdr).encode(); b += b' ' * (-len(b) % 8)
    open(name, 'wb').write(struct.pack('<Q', len(b)) + b + d[8 + n:])
v = json.loads(json.dumps(h)); v['__metadata__']['fpd.version'] = '2'; save('v2.safetensors', v)
m = json.loads(json.dumps(h)); t = json.loads(m['__metadata__']['fpd.table.word_embeddings.weight'])
t['ranks'] = [1, 5, 4, 1]; m['__metadata__']['fpd.table.word_embeddings.weight'] = json.dumps(t); save('ranks.safetensors', m)"
    run "$I" v2.safetensors
    expect_rc "unknown FPD version: exit 1" 1
    expect_grep "unknown FPD version: says so" err.txt "fpd.version' is '2'; this build reads FPD version 1"
    run "$I" ranks.safetensors
    expect_rc "metadata ranks not matching the cores: exit 1" 1
    expect_grep "metadata ranks not matching the cores: names the core" err.txt "core 'word_embeddings.weight.fpd.core0' has shape"
else
    skip "FPD table checks" "python3 with numpy not available"
fi

# "-" reads a piped checkpoint; -q prints nothing
"$I" - <"$ROOT/samples/glove-10k.safetensors" >out.txt 2>err.txt
rc=$?
expect_rc "stdin: exit 0" 0
expect_grep "stdin: lists the tensor" out.txt "word_embeddings\.weight +F32 +\[10000, 100\] +4000000"
run "$I" -q "$ROOT/samples/glove-10k.safetensors"
expect_rc "quiet: exit 0" 0
expect_lines "quiet: no output" out.txt 0

# files that are not safetensors say what they look like
printf 'PK\003\004\024\000\000\000\010\000abcdefghijklmnop' >model.pt
run "$I" model.pt
expect_rc "zip .pt: exit 1" 1
expect_grep "zip .pt: says it looks like a PyTorch checkpoint" err.txt "model.pt: not a safetensors file \(looks like a PyTorch .pt/.bin checkpoint"
printf '\200\002}q\000(X\001\000\000\000aq\001K\001u.' >model.bin
run "$I" model.bin
expect_grep "pickle: says it looks like a pickle" err.txt "not a safetensors file \(looks like a Python pickle"
printf 'GGUF\003\000\000\000\000\000\000\000\000\000\000\000' >model.gguf
run "$I" model.gguf
expect_grep "gguf: says so" err.txt "not a safetensors file \(looks like a GGUF file"
printf '\223NUMPX\001\000v\000{}                    ' >bad.npy
run "$I" bad.npy
expect_rc "npy with a bad magic: exit 1" 1
expect_grep "npy with a bad magic: says so" err.txt "not a safetensors file \(looks like a .npy file with a bad magic"
expect_no_grep "npy with a bad magic: no header length" err.txt "header length"
# text (a TSV, a README) and gzip: named, not read as an absurd header length
printf '1\t1193\t5\t978300760\n1\t661\t3\t978302109\n' >ratings.tsv
run "$I" ratings.tsv
expect_rc "text file: exit 1" 1
expect_grep "text file: says so" err.txt "ratings.tsv: not a safetensors file \(looks like a text file"
expect_no_grep "text file: no header length" err.txt "header length [0-9]"
gzip -c "$ROOT/samples/glove-10k.safetensors" >glove.safetensors.gz
run "$BUILD/fpd-compress" glove.safetensors.gz -o gz-out.safetensors
expect_rc "gzip file: exit 1" 1
expect_grep "gzip file: says so" err.txt "not a safetensors file \(looks like a gzip file; decompress it first"
expect_absent "gzip file: nothing written" gz-out.safetensors

# issue 14: faults in the data. Header-only checks pass a bad row_perm; --verify, fpd-convert
# and fpd-compress (which passes FPD tables through) refuse it. NaN cores are refused by all.
C="$BUILD/fpd-compress"
"$C" "$ROOT/samples/glove-10k.safetensors" -o perm.safetensors --rank 4 --epochs 0 --als 0 --cluster-rows -q
if have_python_numpy; then
    python3 -c "
import json, struct
import numpy as np
d = bytearray(open('perm.safetensors', 'rb').read()); n = struct.unpack('<Q', d[:8])[0]; h = json.loads(d[8:8 + n])
def save(name, tensor, values):
    e = bytearray(d); b0, b1 = h[tensor]['data_offsets']; arr = np.frombuffer(bytes(e[8 + n + b0:8 + n + b1]), dtype=np.float32 if 'core' in tensor else np.int32).copy()
    for i, v in values: arr[i] = v
    e[8 + n + b0:8 + n + b1] = arr.tobytes(); open(name, 'wb').write(e)
T = 'word_embeddings.weight'
p = np.frombuffer(bytes(d[8 + n + h[T + '.fpd.row_perm']['data_offsets'][0]:][:40000]), dtype=np.int32)
save('dup.safetensors', T + '.fpd.row_perm', [(5, int(p[4]))])
save('neg.safetensors', T + '.fpd.row_perm', [(7, -3)])
save('range.safetensors', T + '.fpd.row_perm', [(9, 1 << 20)])
save('nan.safetensors', T + '.fpd.core1', [(3, float('nan'))])
c0 = h[T + '.fpd.core0']['data_offsets']; c1 = h[T + '.fpd.core1']['data_offsets']; c2 = h[T + '.fpd.core2']['data_offsets']
e = bytearray(d)
for (b0, b1) in (c0, c1, c2):
    e[8 + n + b0:8 + n + b1] = np.full((b1 - b0) // 4, 1e20, np.float32).tobytes()
open('huge.safetensors', 'wb').write(e)"
    for f in dup neg range; do
        case $f in dup) what="repeats";; neg) what="row_perm\[7\] = -3 is outside";; range) what="row_perm\[9\] = 1048576 is outside";; esac
        run "$I" $f.safetensors
        expect_rc "row_perm $f: header-only inspect passes (exit 0)" 0
        run "$I" --verify $f.safetensors
        expect_rc "row_perm $f: --verify exit 1" 1
        expect_grep "row_perm $f: --verify names the entry" err.txt "$what"
        run "$BUILD/fpd-convert" $f.safetensors -o $f.dense.safetensors
        expect_rc "row_perm $f: fpd-convert exit 1" 1
        expect_absent "row_perm $f: fpd-convert writes nothing" $f.dense.safetensors
        run "$C" $f.safetensors -o $f.again.safetensors
        expect_rc "row_perm $f: fpd-compress refuses to pass it through (exit 1)" 1
        expect_grep "row_perm $f: fpd-compress names it" err.txt "$what"
        expect_absent "row_perm $f: fpd-compress writes nothing" $f.again.safetensors
    done
    run "$I" nan.safetensors
    expect_rc "NaN core: inspect exit 1" 1
    expect_grep "NaN core: names the core and element" err.txt "core 'word_embeddings.weight.fpd.core1' element 3 is nan; cores must be finite"
    run "$BUILD/fpd-convert" nan.safetensors -o nan.dense.safetensors
    expect_rc "NaN core: fpd-convert exit 1" 1
    run "$C" nan.safetensors -o nan.again.safetensors
    expect_rc "NaN core: fpd-compress exit 1" 1
    run "$I" huge.safetensors
    expect_rc "overflowing cores: header-level inspect passes (finite cores)" 0
    run "$I" --verify huge.safetensors
    expect_rc "overflowing cores: --verify exit 1" 1
    expect_grep "overflowing cores: --verify says the products overflow" err.txt "row 0, column 0 of the reconstructed table is inf: the cores are finite but their products overflow"
    run "$BUILD/fpd-convert" huge.safetensors -o huge.dense.safetensors
    expect_rc "overflowing cores: fpd-convert exit 1" 1
    expect_grep "overflowing cores: fpd-convert names the row" err.txt "row 0, column 0 is inf"
    run "$C" huge.safetensors -o huge.again.safetensors
    expect_rc "overflowing cores: fpd-compress exit 1" 1
    run "$I" --verify perm.safetensors
    expect_rc "a sound permuted table: --verify exit 0" 0
    expect_grep "a sound permuted table: --verify says it checked the data" out.txt "^verified: every encoded table's data read and checked"
    run "$I" perm.safetensors
    expect_no_grep "without --verify: no 'verified' line" out.txt "^verified:"
    # an FPD checkpoint passes through fpd-compress, checked, its tables reported
    run "$C" perm.safetensors -o perm.again.safetensors --json
    expect_rc "pass-through: exit 0" 0
    py_check "pass-through: the FPD table is listed as passed through and the file copied" "
import json; r = json.load(open('out.txt'))
assert r['passed_through'] == [{'name': 'word_embeddings.weight', 'encoding': 'fpd', 'verified': True}], r
assert r['totals']['tables_compressed'] == 0, r"
    # an extension this build does not know
    python3 -c "
import json, struct
d = open('perm.safetensors', 'rb').read(); n = struct.unpack('<Q', d[:8])[0]; h = json.loads(d[8:8 + n])
h['__metadata__']['fpd.extensions'] = 'lowrank/3'
b = json.dumps(h).encode(); b += b' ' * (-len(b) % 8)
open('ext.safetensors', 'wb').write(struct.pack('<Q', len(b)) + b + d[8 + n:])"
    run "$I" ext.safetensors
    expect_rc "unknown extension: exit 1" 1
    expect_grep "unknown extension: says which and what this build reads" err.txt "names the extension 'lowrank/3', which this build \(libfpd [0-9.]+\) does not read \(it reads FPD v1 with rowwise/1, free/1, free-rowwise/1 and free-sym/1\)"
    run "$BUILD/fpd-convert" ext.safetensors -o ext.dense.safetensors
    expect_rc "unknown extension: fpd-convert exit 1" 1
    run "$C" ext.safetensors -o ext.again.safetensors
    expect_rc "unknown extension: fpd-compress exit 1" 1
else
    skip "data faults (issue 14)" "python3 with numpy not available"
fi

# row-wise tables: listed with their encoding; --verify checks every row
"$C" "$ROOT/samples/glove-10k.safetensors" -o q4.safetensors --encoding int4 -q
run "$I" --verify q4.safetensors
expect_rc "int4 table: exit 0" 0
expect_grep "int4 table: listed with its encoding and ratio" out.txt "word_embeddings\.weight +10000 x 100 +F32 +int4 \(fbgemm-fused\) +540000 +4000000 +7\.41x"

# --verify on a file without encoded tables says what it did not check
run "$I" "$ROOT/samples/glove-10k.safetensors" --verify
expect_rc "dense file, --verify: exit 0" 0
expect_grep "dense file, --verify: says no encoded table was checked" out.txt "^verified: no FPD or row-wise table to check; dense tensors are not checked"
