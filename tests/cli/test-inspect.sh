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
assert r['schema'] == 'fpd-inspect/1' and r['fpd_tables'] == []
t = r['tensors'][0]
assert t['name'] == 'word_embeddings.weight' and t['dtype'] == 'F32' and t['shape'] == [10000, 100] and t['bytes'] == 4000000
assert r['totals']['tensor_bytes'] == 4000000"

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
