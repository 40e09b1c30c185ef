# fpd-compress --encoding int8|int4|auto|dense and --max-error: what is written is FBGEMM's
# fused row-wise layout (checked against a NumPy quantizer written here, from FBGEMM's
# reference kernels), fpd-convert dequantizes it back (code * scale + bias, NumPy again),
# fpd-inspect reads it, and the warnings of forced FPD.
C="$BUILD/fpd-compress"
I="$BUILD/fpd-inspect"
V="$BUILD/fpd-convert"
S="$ROOT/samples/glove-10k.safetensors"

for e in int8 int4; do
    run "$C" "$S" -o $e.safetensors --encoding $e --json
    expect_rc "$e: exit 0" 0
    cp out.txt $e.json
    run "$V" $e.safetensors -o $e.npy
    expect_rc "$e: fpd-convert to .npy exit 0" 0
    py_check "$e: bytes are FBGEMM's, fpd-convert gives code * scale + bias, the report's error is right" "
import json, sys; sys.path.insert(0, '$(dirname "$CHECK")')
import numpy as np
from fpd_check import read_st
src, _ = read_st('$S'); out, meta = read_st('$e.safetensors')
W = src['word_embeddings.weight'].astype(np.float32)
Q = out['word_embeddings.weight.rowwise.fused']
m = json.loads(meta['fpd.rowwise.word_embeddings.weight'])
assert meta['fpd.extensions'] == 'rowwise/1' and meta['fpd.version'] == '1', meta
assert m == {'encoding': '$e', 'layout': 'fbgemm-fused', 'rows': 10000, 'dim': 100, 'source_dtype': 'F32',
             'rel_error': m['rel_error']}, m
mn = W.min(1); mx = W.max(1)
if '$e' == 'int8':
    rng = mx - mn; scale = rng / np.float32(255); inv = np.float32(255) / (rng + np.float32(1e-8))
    codes = np.rint((W - mn[:, None]) * inv[:, None]).astype(np.uint8)
    ref = np.concatenate([codes, scale.astype('<f4')[:, None].view(np.uint8), mn.astype('<f4')[:, None].view(np.uint8)], 1)
    deq = codes.astype(np.float32) * scale[:, None] + mn[:, None]
else:
    mn16 = mn.astype(np.float16); mnf = mn16.astype(np.float32); rng = mx - mnf
    sc = np.where(rng == 0, np.float32(1), rng / np.float32(15)).astype(np.float16).astype(np.float32)
    sc = np.where(sc == 0, np.float32(1), sc); inv = np.float32(1) / sc
    codes = np.clip(np.rint((W - mnf[:, None]) * inv[:, None]), 0, 15).astype(np.uint8)
    packed = codes[:, 0::2] | (codes[:, 1::2] << 4)
    ref = np.concatenate([packed, sc.astype(np.float16)[:, None].view(np.uint8), mn16[:, None].view(np.uint8)], 1)
    deq = codes.astype(np.float32) * sc[:, None] + mnf[:, None]
assert Q.shape == ref.shape and Q.dtype == np.uint8, (Q.shape, ref.shape)
assert np.array_equal(Q, ref), np.argwhere(Q != ref)[:5]
D = np.load('$e.npy')
assert D.dtype == np.float32 and D.shape == (10000, 100)
assert np.allclose(D, deq, rtol=0, atol=1e-6 * np.abs(W).max()), np.abs(D - deq).max()
err = float(np.linalg.norm((W - deq).astype(np.float64)) / np.linalg.norm(W.astype(np.float64)))
rep = json.load(open('$e.json'))['tables'][0]
assert abs(rep['rel_error'] - err) < 1e-5 and abs(m['rel_error'] - err) < 1e-6, (rep['rel_error'], m['rel_error'], err)
assert rep['encoding'] == '$e' and rep['bytes_after'] == Q.nbytes, rep"
done

# dense: the table is copied; convert of an int8 checkpoint to dense safetensors drops the extension
run "$C" "$S" -o dense.safetensors --encoding dense --json
expect_rc "dense: exit 0" 0
expect_grep "dense: kept dense, with the reason" out.txt '"reason": "--encoding dense"'
run "$V" int8.safetensors -o int8.dense.safetensors --json
expect_rc "int8 -> dense safetensors: exit 0" 0
expect_grep "int8 -> dense safetensors: the table comes from int8" out.txt '"from": "int8"'
run "$I" int8.dense.safetensors --json
py_check "int8 -> dense safetensors: no encoded table or fpd.* key left" "
import json; r = json.load(open('out.txt'))
assert r['tables'] == [] and [t['name'] for t in r['tensors']] == ['word_embeddings.weight'], r"

# auto under a looser target: int4 (7.4x at 0.108) is the smallest that meets 0.15
run "$C" "$S" -o auto15.safetensors --max-error 0.15 --json
expect_rc "max-error 0.15: exit 0" 0
expect_grep "max-error 0.15: int4" out.txt '"encoding": "int4"'
# a target nothing meets: dense, with the reason and the numbers
run "$C" "$S" -o auto0.safetensors --max-error 0.001 --json
expect_rc "max-error 0.001: exit 0" 0
expect_grep "max-error 0.001: dense with the reason" out.txt '"reason": "no encoding meets --max-error 0.001 \(target 0.001; FPD: .*int8 3.7x 0.006'
# and a target only FPD meets at a smaller size (0.95 > every error, FPD is smallest)
run "$C" "$S" -o auto95.safetensors --max-error 0.95 --epochs 0 --json
expect_rc "max-error 0.95: exit 0" 0
py_check "max-error 0.95: FPD with F16 cores (auto's default), fitted within the target" "
import json; t = json.load(open('out.txt'))['tables'][0]
assert t['encoding'] == 'fpd' and t['core_dtype'] == 'F16' and t['rel_error'] <= 0.95 and t['bytes_after'] < 10000 * 54, t"
run "$C" "$S" -o auto95f32.safetensors --max-error 0.95 --epochs 0 --core-dtype F32 --json
py_check "max-error 0.95 --core-dtype F32: F32 cores as asked" "
import json; t = json.load(open('out.txt'))['tables'][0]
assert t['encoding'] == 'fpd' and t['core_dtype'] == 'F32', t"

# --rank forces FPD: warnings (stderr and JSON) when the rank is capped and the output grows
run "$C" "$S" -o r200.safetensors --rank 200 --tables word_embeddings.weight --epochs 0 --als 0 --json
expect_rc "rank 200: exit 0" 0
cp out.txt r200.json
expect_grep "rank 200: warns that the rank is capped" err.txt "warning: word_embeddings.weight: --rank 200 is above what the shape allows; the ranks are capped to 125"
expect_grep "rank 200: warns that the output is larger" err.txt "warning: word_embeddings.weight: the fpd form takes 4102500 bytes, not less than the 4000000 bytes"
py_check "rank 200: both warnings in the JSON" "
import json; r = json.load(open('r200.json'))
assert len(r['warnings']) == 2 and 'capped to 125' in r['warnings'][0] and 'not less than' in r['warnings'][1], r['warnings']"
# a table kept dense (fewer than --min-rows rows) gets no capped-rank warning: a
# checkpoint of the sample's 2,000 first rows and a [1, 8] head, written here
py_check "setup: a checkpoint with a table and a small head" "
import json, struct, numpy as np
hdr = json.loads(open('$S', 'rb').read(8 + struct.unpack('<Q', open('$S', 'rb').read(8))[0])[8:])
off = 8 + struct.unpack('<Q', open('$S', 'rb').read(8))[0]
w = np.fromfile('$S', dtype='<f4', count=2000 * 100, offset=off + hdr['word_embeddings.weight']['data_offsets'][0])
h = np.arange(8, dtype='<f4')
meta = {'emb.weight': {'dtype': 'F32', 'shape': [2000, 100], 'data_offsets': [0, w.nbytes]},
        'head.weight': {'dtype': 'F32', 'shape': [1, 8], 'data_offsets': [w.nbytes, w.nbytes + h.nbytes]}}
b = json.dumps(meta).encode(); b += b' ' * (-len(b) % 8)
open('mix.safetensors', 'wb').write(struct.pack('<Q', len(b)) + b + w.tobytes() + h.tobytes())"
run "$C" mix.safetensors -o mix-r200.safetensors --rank 200 --epochs 0 --als 0 --queries 0 --json
expect_rc "rank 200, a small head: exit 0" 0
expect_grep "rank 200, a small head: the table's rank is capped" err.txt "warning: emb.weight: --rank 200 is above what the shape allows"
expect_no_grep "rank 200, a small head: no warning for the head kept dense" err.txt "head.weight"
run "$C" "$S" -o r4.safetensors --rank 4 --epochs 0 --als 0 -q
expect_rc "rank 4 -q: exit 0" 0
expect_lines "rank 4 -q: no report on stdout" out.txt 0
expect_lines "rank 4 -q: no warning on stderr" err.txt 0
run "$C" "$S" -o r4b.safetensors --rank 4 --encoding int8
expect_rc "rank with --encoding int8: exit 2" 2
expect_grep "rank with --encoding int8: says why" err.txt "--rank/--terms force FPD; they do not go with --encoding int8"
run "$C" "$S" -o x.safetensors --encoding int3
expect_rc "unknown encoding: exit 2" 2

# a table with NaN is refused before any fit, with its tensor and row, whatever the encoding
if have_python_numpy; then
    python3 -c "
import numpy as np; a = np.ones((1500, 8), np.float32); a[1234, 5] = np.inf; np.save('inf.npy', a)"
    for e in auto fpd int4; do
        run "$C" inf.npy -o inf.$e.safetensors --encoding $e
        expect_rc "Inf table, $e: exit 1" 1
        expect_grep "Inf table, $e: names tensor, row and column" err.txt "tensor 'inf': row 1234, column 5 is Inf"
        expect_absent "Inf table, $e: no output" inf.$e.safetensors
    done
fi

# progress: table counters, a rate and an ETA while finetuning
run "$C" "$S" -o prog.safetensors --encoding fpd --epochs 2 --progress
expect_grep "progress: table 1/1 and the stage with a rate" err.txt "table 1/1 word_embeddings.weight: finetune [0-9]+/[0-9]+"

# "-" is standard input for fpd-compress too; "-o -" is refused (stdout carries the report)
"$C" - -o piped.safetensors -q <"$S" >out.txt 2>err.txt
rc=$?
expect_rc "stdin: exit 0" 0
expect_exists "stdin: output written" piped.safetensors
run "$C" "$S" -o -
expect_rc "-o -: exit 2" 2
expect_absent "-o -: no file named '-'" ./-
