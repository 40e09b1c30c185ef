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
