# --device auto|cpu|cuda[:N] (fpd-compress, fpd-eval, sample-train-gmf) and fpd-batch's
# device:, without a GPU: the CUDA backend object is replaced by the fake ones built for
# the tests (tests/lib/fake-cuda-backend.c: the CPU's code behind the CUDA backend's
# entry point, so results through it must equal the CPU's byte for byte; it logs the
# engine calls it ran), loaded through FPD_CUDA_BACKEND. Checks: the work really goes
# through the loaded object; no device, no engine, stale or broken objects give exit 3
# and one line for an explicit cuda and the CPU for auto; a CPU run never loads CUDA.
C="$BUILD/fpd-compress"
SAMPLE="$ROOT/samples/glove-10k.safetensors"
FAKE="$BUILD/libfpd-fakecuda-ok.so"

# ---- options ----
run "$C" "$SAMPLE" -o x.safetensors --device gpu
expect_rc "--device gpu: exit 2" 2
expect_grep "--device gpu: says what is allowed" err.txt "^fpd-compress: error: --device must be auto, cpu, cuda or cuda:N, got 'gpu'"
run "$C" "$SAMPLE" -o x.safetensors --device cuda:x
expect_rc "--device cuda:x: exit 2" 2
run "$BUILD/fpd-eval" x.safetensors --ncf a b --device tpu
expect_rc "fpd-eval --device tpu: exit 2" 2
run "$BUILD/sample-train-gmf" r.tsv --device cuda:-1
expect_rc "sample-train-gmf --device cuda:-1: exit 2" 2

# ---- a CPU run never loads CUDA (the dynamic loader's own record) ----
LD_DEBUG=files "$BUILD/fpd-inspect" --version >out.txt 2>ld.txt
expect_no_grep "--version loads no CUDA library" ld.txt "libcudart|libcublas|libcusolver|libfpd-cuda"
LD_DEBUG=files "$C" "$SAMPLE" -o cpu0.safetensors --encoding fpd --rank 4 --epochs 1 --device cpu -q >out.txt 2>ld.txt
expect_no_grep "--device cpu: no CUDA library loaded" ld.txt "libcudart|libcublas|libcusolver|libfpd-cuda"
LD_DEBUG=files "$C" "$SAMPLE" -o cpu1.safetensors --encoding fpd --rank 4 --epochs 0 --als 0 -q >out.txt 2>ld.txt
expect_no_grep "auto without engine work: CUDA not probed" ld.txt "libcudart|libfpd-cuda"

# ---- the real object (no GPU on the test machines: no device) ----
if [ -f "$BUILD/libfpd-cuda.so" ]; then
    run "$C" "$SAMPLE" -o real.safetensors --encoding fpd --rank 4 --device cuda
    if [ "$rc" -eq 0 ]; then
        skip "real CUDA backend without a device" "a CUDA device is present"
    else
        expect_rc "real backend, no device: exit 3" 3
        expect_lines "real backend, no device: one line" err.txt 1
        expect_grep "real backend, no device: says so" err.txt "^fpd-compress: error: --device cuda:0: no CUDA device"
        expect_absent "real backend, no device: nothing written" real.safetensors
        run "$C" --version
        expect_grep "--version names the object, not loaded" out.txt "cuda-backend=.*/libfpd-cuda\.so \(not loaded\)"
    fi
    # a tool away from its build folder, with nothing installed: not found, and where it looked
    mkdir -p away
    cp "$C" away/
    run away/fpd-compress "$SAMPLE" -o away.safetensors --encoding fpd --rank 4 --device cuda
    if grep -q "looked in" err.txt || [ "$rc" -ne 3 ]; then
        expect_rc "object not found: exit 3" 3
        expect_grep "object not found: where it looked" err.txt "^fpd-compress: error: --device cuda:0: the CUDA backend object libfpd-cuda\.so was not found \(looked in: $PWD/away/libfpd-cuda\.so; .*/libfpd-cuda\.so\); set FPD_CUDA_BACKEND to its path$"
    else
        skip "object not found" "an installed libfpd-cuda.so was found: $(head -c 200 err.txt)"
    fi
else
    run "$C" "$SAMPLE" -o real.safetensors --encoding fpd --rank 4 --device cuda
    expect_rc "no CUDA in this build: exit 3" 3
    expect_grep "no CUDA in this build: says how to get it" err.txt "^fpd-compress: error: --device cuda:0: this build has no CUDA backend; rebuild with make CUDA=1$"
fi

if [ ! -f "$FAKE" ]; then
    skip "fake CUDA backend" "$FAKE not built (make fake-backends)"
    return 0 2>/dev/null || exit 0
fi

# ---- fpd-compress: finetuning through the object equals the CPU's ----
run "$C" "$SAMPLE" -o cpu.safetensors --encoding fpd --rank 8 --epochs 2 --device cpu --json
expect_rc "compress on the CPU: exit 0" 0
cp out.txt cpu.json
run env FPD_CUDA_BACKEND="$FAKE" FPD_FAKE_CUDA_LOG="$PWD/fake.log" "$C" "$SAMPLE" -o fake.safetensors --encoding fpd --rank 8 --epochs 2 --device cuda --json --verbose
expect_rc "compress --device cuda (fake): exit 0" 0
cp out.txt fake.json
expect_grep "--verbose names the device" err.txt "^fpd-compress: device: fakecuda:0 \(host memory\)$"
if cmp -s cpu.safetensors fake.safetensors; then _report ok "compress --device cuda (fake): the CPU's bytes"; else _report "not ok" "compress --device cuda (fake): the CPU's bytes" "outputs differ"; fi
expect_grep "compress --device cuda (fake): the engine ran in the object" fake.log "^fakecuda device=0 forward=[1-9][0-9]* backward=[1-9][0-9]* step=[1-9][0-9]*$"
py_check "compress: the reports record the device" "
import json; c = json.load(open('cpu.json')); f = json.load(open('fake.json'))
assert c['device'] == 'cpu' and c['device_requested'] == 'cpu', c
assert f['device'] == 'fakecuda:0 (host memory)' and f['device_requested'] == 'cuda:0', f
assert c['tables'][0]['rel_error'] == f['tables'][0]['rel_error']"

# auto takes the object when it has a device and the engine
run env FPD_CUDA_BACKEND="$FAKE" "$C" "$SAMPLE" -o auto.safetensors --encoding fpd --rank 8 --epochs 2 --json
expect_grep "auto with a device: CUDA" out.txt "\"device\": \"fakecuda:0 \(host memory\)\""

# the second device of two
run env FPD_CUDA_BACKEND="$FAKE" FPD_FAKE_CUDA_DEVICES=2 "$C" "$SAMPLE" -o d1.safetensors --encoding fpd --rank 8 --epochs 1 --device cuda:1 --json
expect_grep "--device cuda:1: that device" out.txt "\"device\": \"fakecuda:1 \(host memory\)\""
run env FPD_CUDA_BACKEND="$FAKE" "$C" "$SAMPLE" -o d2.safetensors --encoding fpd --rank 8 --device cuda:1
expect_rc "--device cuda:1 of one device: exit 3" 3
expect_grep "--device cuda:1 of one device: says so" err.txt "^fpd-compress: error: --device cuda:1: no CUDA device 1 \(1 found\)$"
expect_absent "--device cuda:1 of one device: nothing written" d2.safetensors

# no device: explicit cuda exits 3 with one line; auto runs on the CPU and says why
run env FPD_CUDA_BACKEND="$FAKE" FPD_FAKE_CUDA_DEVICES=0 "$C" "$SAMPLE" -o nodev.safetensors --encoding fpd --rank 8 --device cuda
expect_rc "no device, --device cuda: exit 3" 3
expect_lines "no device, --device cuda: one line" err.txt 1
expect_grep "no device, --device cuda: says why" err.txt "^fpd-compress: error: --device cuda:0: no CUDA device: the fake backend reports none"
expect_absent "no device, --device cuda: nothing written" nodev.safetensors
run env FPD_CUDA_BACKEND="$FAKE" FPD_FAKE_CUDA_DEVICES=0 "$C" "$SAMPLE" -o nodev.safetensors --encoding fpd --rank 8 --epochs 2 --json --verbose
expect_rc "no device, auto: exit 0" 0
expect_grep "no device, auto: stderr says the CPU and why" err.txt "^fpd-compress: device: cpu \(auto: no CUDA device: the fake backend reports none"
py_check "no device, auto: the report says cpu and why" "
import json; r = json.load(open('out.txt'))
assert r['device'] == 'cpu' and r['device_requested'] == 'auto' and 'no CUDA device' in r['device_note'], r"
if cmp -s cpu.safetensors nodev.safetensors; then _report ok "no device, auto: the CPU's bytes"; else _report "not ok" "no device, auto: the CPU's bytes" "outputs differ"; fi

# a backend that cannot run the engine
run env FPD_CUDA_BACKEND="$FAKE" FPD_FAKE_CUDA_NO_ENGINE=1 "$C" "$SAMPLE" -o noeng.safetensors --encoding fpd --rank 8 --device cuda
expect_rc "no engine, --device cuda: exit 3" 3
expect_grep "no engine, --device cuda: says so" err.txt "^fpd-compress: error: --device cuda:0: fakecuda:0 \(host memory\) cannot run the FPD engine"
run env FPD_CUDA_BACKEND="$FAKE" FPD_FAKE_CUDA_NO_ENGINE=1 "$C" "$SAMPLE" -o noeng.safetensors --encoding fpd --rank 8 --json
expect_grep "no engine, auto: the CPU" out.txt "\"device\": \"cpu\""

# broken objects: exit 3, one line, the reason
for v in oldabi:"has backend ABI version 0, this libfpd needs [0-9]+: a stale build; rebuild it \(make CUDA=1\)" \
         layout:"was built with another layout of struct fpd_backend_i" \
         nosym:"is not an libfpd backend object: it has no fpd_backend_plugin_init" \
         refuse:"refused this libfpd"; do
    name=${v%%:*}
    run env FPD_CUDA_BACKEND="$BUILD/libfpd-fakecuda-$name.so" "$C" "$SAMPLE" -o broken.safetensors --encoding fpd --rank 8 --device cuda
    expect_rc "$name object: exit 3" 3
    expect_lines "$name object: one line" err.txt 1
    expect_grep "$name object: says why" err.txt "^fpd-compress: error: --device cuda:0: .*${v#*:}"
done
run env FPD_CUDA_BACKEND="$PWD/nowhere.so" "$C" "$SAMPLE" -o broken.safetensors --encoding fpd --rank 8 --device cuda
expect_rc "missing object: exit 3" 3
expect_grep "missing object: names it" err.txt "the CUDA backend object .*/nowhere\.so \(FPD_CUDA_BACKEND\) does not exist$"
printf 'not an ELF file\n' >notelf.so
run env FPD_CUDA_BACKEND="$PWD/notelf.so" "$C" "$SAMPLE" -o broken.safetensors --encoding fpd --rank 8 --device cuda
expect_rc "not a shared object: exit 3" 3
expect_grep "not a shared object: dlopen's reason" err.txt "cannot load the backend object: .*notelf\.so"
run env FPD_CUDA_BACKEND="$BUILD/libfpd-fakecuda-oldabi.so" "$C" "$SAMPLE" -o stale.safetensors --encoding fpd --rank 8 --epochs 1 --json
expect_grep "stale object, auto: the CPU, with the reason" out.txt "\"device_note\": \".*a stale build"

# ---- fpd-eval --finetune: an FPD GMF model finetuned through the object ----
if have_python_numpy; then
    python3 -c "
import numpy as np, json, struct
rng = np.random.default_rng(3)
def st(path, tensors):
    h, data = {}, b''
    for name, a in tensors:
        raw = np.ascontiguousarray(a, dtype='<f4').tobytes()
        h[name] = {'dtype': 'F32', 'shape': list(a.shape), 'data_offsets': [len(data), len(data) + len(raw)]}
        data += raw
    hb = json.dumps(h).encode(); hb += b' ' * (-len(hb) % 8)
    open(path, 'wb').write(struct.pack('<Q', len(hb)) + hb + data)
U, I, D = 64, 96, 8
st('gmf.safetensors', [('user_embedding.weight', rng.normal(0, .3, (U, D))), ('item_embedding.weight', rng.normal(0, .3, (I, D))),
                       ('prediction.weight', np.ones((1, D))), ('prediction.bias', np.zeros(1))])
pos = [(u, i) for u in range(U) for i in range(I) if (u * 7 + i * 3) % 11 == 0]
held = {}
for u, i in pos: held.setdefault(u, i)
open('train.tsv', 'w').write(''.join('%d\t%d\n' % p for p in pos if held[p[0]] != p[1]))
open('test.rating', 'w').write(''.join('%d\t%d\t5\t0\n' % (u, held[u]) for u in sorted(held)))
seen = set(pos)
neg = lambda u: [str(i) for i in range(I) if (u, i) not in seen][:20]
open('test.negative', 'w').write(''.join('(%d,%d)\t' % (u, held[u]) + '\t'.join(neg(u)) + '\n' for u in sorted(held)))
# ratings for sample-train-gmf: header, 1-based ids
open('ratings.tsv', 'w').write('user\titem\trating\n' + ''.join('%d\t%d\t4\n' % (u + 1, i + 1) for u, i in pos))
"
    run "$C" gmf.safetensors -o gmf.fpd.safetensors -t user_embedding.weight,item_embedding.weight --encoding fpd --rank 2 --cores 2 --epochs 0 --device cpu
    expect_rc "GMF compressed for fpd-eval: exit 0" 0
    E="$BUILD/fpd-eval"
    run "$E" gmf.fpd.safetensors --ncf test.rating test.negative --finetune train.tsv -o tuned-cpu.safetensors --epochs 2 --batch 50 --device cpu --json
    expect_rc "fpd-eval finetune on the CPU: exit 0" 0
    cp out.txt eval-cpu.json
    rm -f fake.log
    run env FPD_CUDA_BACKEND="$FAKE" FPD_FAKE_CUDA_LOG="$PWD/fake.log" "$E" gmf.fpd.safetensors --ncf test.rating test.negative --finetune train.tsv -o tuned-fake.safetensors --epochs 2 --batch 50 --device cuda --json -v
    expect_rc "fpd-eval finetune --device cuda (fake): exit 0" 0
    cp out.txt eval-fake.json
    expect_grep "fpd-eval -v names the device" err.txt "^fpd-eval: device: fakecuda:0 \(host memory\)$"
    if cmp -s tuned-cpu.safetensors tuned-fake.safetensors; then _report ok "fpd-eval --device cuda (fake): the CPU's bytes"; else _report "not ok" "fpd-eval --device cuda (fake): the CPU's bytes" "outputs differ"; fi
    # one backend for both FPD tables: one line when it is freed
    expect_grep "fpd-eval --device cuda (fake): the engines ran in the object" fake.log "^fakecuda device=0 forward=[1-9][0-9]* backward=[1-9][0-9]* step=[1-9][0-9]*$"
    py_check "fpd-eval: the report records the device; metrics equal" "
import json; c = json.load(open('eval-cpu.json')); f = json.load(open('eval-fake.json'))
assert c['finetune']['device'] == 'cpu' and f['finetune']['device'] == 'fakecuda:0 (host memory)', (c, f)
assert c['finetune']['after'] == f['finetune']['after'], (c['finetune'], f['finetune'])"
    run env FPD_CUDA_BACKEND="$FAKE" FPD_FAKE_CUDA_DEVICES=0 "$E" gmf.fpd.safetensors --ncf test.rating test.negative --finetune train.tsv -o t3.safetensors --device cuda
    expect_rc "fpd-eval no device, --device cuda: exit 3" 3
    expect_lines "fpd-eval no device, --device cuda: one line" err.txt 1
    expect_absent "fpd-eval no device: nothing written" t3.safetensors

    # ---- sample-train-gmf --device ----
    T="$BUILD/sample-train-gmf"
    run "$T" ratings.tsv --tables fpd --dim 8 --rank 2 --cores 2 --epochs 1 --batch 50 --device cpu --json
    expect_rc "train-gmf on the CPU: exit 0" 0
    cp out.txt train-cpu.json
    rm -f fake.log
    run env FPD_CUDA_BACKEND="$FAKE" FPD_FAKE_CUDA_LOG="$PWD/fake.log" "$T" ratings.tsv --tables fpd --dim 8 --rank 2 --cores 2 --epochs 1 --batch 50 --device cuda --json
    expect_rc "train-gmf --device cuda (fake): exit 0" 0
    cp out.txt train-fake.json
    expect_grep "train-gmf --device cuda (fake): the engines ran in the object" fake.log "^fakecuda device=0 forward=[1-9][0-9]* backward=[1-9][0-9]* step=[1-9][0-9]*$"
    py_check "train-gmf: same metrics and loss; the report records the device" "
import json; c = json.load(open('train-cpu.json')); f = json.load(open('train-fake.json'))
assert c['device'] == 'cpu' and f['device'] == 'fakecuda:0 (host memory)', (c.get('device'), f.get('device'))
for a, b in zip(c['runs'], f['runs']):
    for k in ('hr10', 'ndcg10', 'final_loss'): assert a[k] == b[k], (k, a, b)"
    # free coordinates through a CUDA-kind backend (ABI 4: the engine takes them; the
    # fake object runs the CPU engine, so the result must be the CPU's exactly)
    run "$T" ratings.tsv --tables fpd --dim 8 --rank 2 --cores 2 --epochs 1 --batch 50 --free-coords 2 --device cpu --json
    expect_rc "train-gmf --free-coords on the CPU: exit 0" 0
    cp out.txt trainf-cpu.json
    run env FPD_CUDA_BACKEND="$FAKE" "$T" ratings.tsv --tables fpd --dim 8 --rank 2 --cores 2 --epochs 1 --batch 50 --free-coords 2 --device cuda --json
    expect_rc "train-gmf --free-coords --device cuda (fake): exit 0, not refused" 0
    cp out.txt trainf-fake.json
    py_check "train-gmf --free-coords --device cuda (fake): the CPU's metrics and loss" "
import json; c = json.load(open('trainf-cpu.json')); f = json.load(open('trainf-fake.json'))
for a, b in zip(c['runs'], f['runs']):
    for k in ('hr10', 'ndcg10', 'final_loss'): assert a[k] == b[k], (k, a, b)"
    run env FPD_CUDA_BACKEND="$FAKE" FPD_FAKE_CUDA_DEVICES=0 "$T" ratings.tsv --tables fpd --dim 8 --rank 2 --cores 2 --epochs 1 --device cuda
    expect_rc "train-gmf no device, --device cuda: exit 3" 3
    expect_lines "train-gmf no device, --device cuda: one line" err.txt 1
else
    skip "fpd-eval and sample-train-gmf --device" "python3 with numpy not available"
fi

# ---- fpd-batch: device: is used ----
B="$BUILD/fpd-batch"
mkp() { # folder device
    mkdir -p "$1"
    printf 'version: 1\ninputs:\n  - %s\noutput:\n  folder: out\ndefaults:\n  rank: 8\n  epochs: 2\n  recall_queries: 0\n  device: %s\n' "$SAMPLE" "$2" >"$1/p.yaml"
}
mkp bcpu cpu
run "$B" bcpu/p.yaml -q
expect_rc "batch device: cpu: exit 0" 0
mkp bcuda cuda
rm -f fake.log
run env FPD_CUDA_BACKEND="$FAKE" FPD_FAKE_CUDA_LOG="$PWD/fake.log" "$B" bcuda/p.yaml -q
expect_rc "batch device: cuda (fake): exit 0" 0
expect_grep "batch device: cuda (fake): the engine ran in the object" fake.log "^fakecuda device=0 forward=[1-9][0-9]* backward=[1-9][0-9]* step=[1-9][0-9]*$"
if cmp -s bcpu/out/glove-10k.fpd.safetensors bcuda/out/glove-10k.fpd.safetensors; then _report ok "batch device: cuda (fake): the CPU's bytes"; else _report "not ok" "batch device: cuda (fake): the CPU's bytes" "outputs differ: $(ls bcpu/out bcuda/out)"; fi
py_check "batch: the report names the device of each table" "
import json
for d, want in (('bcpu', 'cpu'), ('bcuda', 'fakecuda:0 (host memory)')):
    r = json.load(open(d + '/out/report.json'))
    devs = [t.get('device') for u in r['checkpoints'] for t in u['tables'] if t.get('compressed')]
    assert devs and all(x == want for x in devs), (d, devs)"
mkp bnodev cuda
run env FPD_CUDA_BACKEND="$FAKE" FPD_FAKE_CUDA_DEVICES=0 "$B" bnodev/p.yaml -q
expect_rc "batch device: cuda, no device: exit 3" 3
expect_grep "batch device: cuda, no device: place and reason" err.txt "^fpd-batch: error: bnodev/p.yaml:10:11: device: cuda, but no CUDA device is available \(no CUDA device: the fake backend reports none"
expect_absent "batch device: cuda, no device: nothing written" bnodev/out/glove-10k.fpd.safetensors
run env FPD_CUDA_BACKEND="$FAKE" FPD_FAKE_CUDA_NO_ENGINE=1 "$B" bnodev/p.yaml -q
expect_rc "batch device: cuda, no engine: exit 3" 3
expect_grep "batch device: cuda, no engine: says so" err.txt "cannot run the FPD engine"
# auto: the object when a table finetunes
mkp bauto auto
run env FPD_CUDA_BACKEND="$FAKE" "$B" bauto/p.yaml -q
expect_rc "batch device: auto (fake): exit 0" 0
expect_grep "batch device: auto (fake): the report names it" bauto/out/report.json "\"device\": \"fakecuda:0 \(host memory\)\""
# ALS alone (epochs 0) is engine work too: its backward passes run in the object
mkdir -p bals
printf 'version: 1\ninputs:\n  - %s\noutput:\n  folder: out\ndefaults:\n  rank: 8\n  epochs: 0\n  recall_queries: 0\n  device: cuda\n' "$SAMPLE" >bals/p.yaml
rm -f fake.log
run env FPD_CUDA_BACKEND="$FAKE" FPD_FAKE_CUDA_LOG="$PWD/fake.log" "$B" bals/p.yaml -q
expect_rc "batch ALS only, device: cuda (fake): exit 0" 0
expect_grep "batch ALS only: backward passes in the object, no steps" fake.log "^fakecuda device=0 forward=[1-9][0-9]* backward=[1-9][0-9]* step=0$"
