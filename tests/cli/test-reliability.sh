# Reliability (issue 14): an input truncated while a tool reads it gives an error
# naming it, exit 1 and no output (fpd-compress on safetensors and .npy, fpd-batch);
# SIGTERM at the start or while working gives the tool's message and 128+15; a temporary file
# left by a killed writer (named: a file system without O_TMPFILE) is removed by the
# next run that writes the same output. The truncation happens once the tool shows
# progress (the fit is reading the table), so it is deterministic: the table is read
# again until the end of the fit, and the runs with --epochs 8 last far longer.
C="$BUILD/fpd-compress"
SAMPLE="$ROOT/samples/glove-10k.safetensors"

# wait_grep FILE PATTERN: wait (at most 20 s) until FILE has PATTERN
wait_grep() {
    i=0
    while [ $i -lt 2000 ] && ! grep -q -- "$2" "$1" 2>/dev/null; do sleep 0.01; i=$((i + 1)); done
}
# bg CMD...: start CMD in the background (stdout out.txt, stderr err.txt); pid in $pid
bg() {
    rm -f out.txt err.txt
    "$@" >out.txt 2>err.txt </dev/null &
    pid=$!
}
# reap: wait for the background command; exit code in $rc
reap() {
    wait "$pid"
    rc=$?
}

# ---- fpd-compress, safetensors input truncated during the fit
cp "$SAMPLE" in.safetensors
bg "$C" in.safetensors -o out.safetensors --encoding fpd --progress --epochs 8 --queries 0
wait_grep err.txt '%'
truncate -s 300 in.safetensors
reap
expect_rc "truncated safetensors: exit 1" 1
expect_grep "truncated safetensors: names the file and says what happened" err.txt \
    "fpd-compress: error: in.safetensors: the file shrank while it was being read \(truncated during the run\)"
expect_absent "truncated safetensors: no output" out.safetensors
expect_no_temp "truncated safetensors: no temporary file" .

# ---- the same with a .npy input (made from the sample's table: [10000, 100] F32)
{ printf '\223NUMPY\001\000\166\000'
  printf "{'descr': '<f4', 'fortran_order': False, 'shape': (10000, 100), }"
  printf '%52s\n' ''
  tail -c 4000000 "$SAMPLE"; } >table.npy
run "$BUILD/fpd-inspect" table.npy
expect_rc "setup: the .npy made here is valid" 0
bg "$C" table.npy -o out.safetensors --encoding fpd --progress --epochs 8 --queries 0
wait_grep err.txt '%'
truncate -s 128 table.npy
reap
expect_rc "truncated .npy: exit 1" 1
expect_grep "truncated .npy: names the file" err.txt \
    "fpd-compress: error: table.npy: the file shrank while it was being read \(truncated during the run\)"
expect_absent "truncated .npy: no output" out.safetensors
expect_no_temp "truncated .npy: no temporary file" .

# ---- fpd-batch: the same during a pipeline's unit
cp "$SAMPLE" b.safetensors
printf 'inputs:\n  - b.safetensors\noutput:\n  folder: bout\ndefaults:\n  epochs: 8\n  recall_queries: 0\n' >p.yaml
bg "$BUILD/fpd-batch" p.yaml --progress
wait_grep err.txt '%'
truncate -s 300 b.safetensors
reap
expect_rc "batch, truncated input: exit 1" 1
expect_grep "batch, truncated input: names the file" err.txt \
    "fpd-batch: error: .*b.safetensors: the file shrank while it was being read \(truncated during the run\)"
expect_absent "batch, truncated input: no output" bout/b.fpd.safetensors
if ls -a bout 2>/dev/null | grep -q '\.tmp-\|\.batch-'; then
    _report "not ok" "batch, truncated input: no temporary file" "$(ls -a bout)"
else
    _report ok "batch, truncated input: no temporary file"
fi

# ---- SIGTERM at the very start: the tool's message, 128+15, nothing written. The
# tool is started with SIGTERM blocked and sent it as soon as it has been executed,
# so it is pending before main runs (the tools unblock it once their handlers are in).
cp "$SAMPLE" t.safetensors
if command -v python3 >/dev/null 2>&1; then
    python3 -c '
import signal, subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=open("out.txt", "w"), stderr=open("err.txt", "w"),
                     preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM]))
p.send_signal(signal.SIGTERM)  # Popen returns once the tool is executed
rc = p.wait()
sys.exit(128 - rc if rc < 0 else rc)' "$C" t.safetensors -o t.out.safetensors --encoding fpd --epochs 8 --queries 0
    rc=$?
    expect_rc "SIGTERM at the start: exit 143" 143
    expect_grep "SIGTERM at the start: says so" err.txt "^fpd-compress: error: interrupted; nothing was written"
    expect_absent "SIGTERM at the start: no output" t.out.safetensors
    expect_no_temp "SIGTERM at the start: no temporary file" .
else
    skip "SIGTERM at the start" "python3 not available"
fi
# and during the fit, once the input is mapped (the handler then stops the fit)
bg "$C" t.safetensors -o t.out.safetensors --encoding fpd --epochs 8 --queries 0
i=0
while [ $i -lt 2000 ] && ! grep -q 't.safetensors' "/proc/$pid/maps" 2>/dev/null; do sleep 0.005; i=$((i + 1)); done
kill -TERM "$pid"
reap
expect_rc "SIGTERM while working: exit 143" 143
expect_grep "SIGTERM while working: says so" err.txt "fpd-compress: error: interrupted; nothing was written"
expect_absent "SIGTERM while working: no output" t.out.safetensors

# ---- a temporary file of a killed writer is removed by the next run (named
# temporaries: where O_TMPFILE is missing; a fresh or locked one is left alone)
touch -d '1 hour ago' .s.out.safetensors.tmp-Ab12Cd
touch .s.out.safetensors.tmp-Fresh1
run "$C" "$SAMPLE" -o s.out.safetensors --encoding int8 --queries 0 -q
expect_rc "stale temporary: the run succeeds" 0
expect_absent "stale temporary: removed" .s.out.safetensors.tmp-Ab12Cd
expect_exists "stale temporary: a fresh one is kept" .s.out.safetensors.tmp-Fresh1
rm -f .s.out.safetensors.tmp-Fresh1

# ---- edge shapes (issue 14, item 6)
# mk_npy FILE SHAPE: an F32 .npy of that shape (a Python tuple) with no data
mk_npy() {
    h="{'descr': '<f4', 'fortran_order': False, 'shape': $2, }"
    pad=$((64 - (10 + ${#h} + 1) % 64))
    [ $pad -eq 64 ] && pad=0
    { printf '\223NUMPY\001\000'; printf "\\$(printf %03o $(((${#h} + pad + 1) % 256)))\\$(printf %03o $(((${#h} + pad + 1) / 256)))"
      printf '%s' "$h"; printf "%${pad}s\n" ''; } >"$1"
}
mk_npy rows0.npy '(0, 16)'
mk_npy cols0.npy '(16, 0)'
run "$BUILD/fpd-inspect" rows0.npy
expect_rc "0-row .npy: readable" 0
run "$C" rows0.npy -o rows0.safetensors --tables rows0
expect_rc "0-row table named by --tables: a usage error, exit 2" 2
run "$C" rows0.npy -o rows0.safetensors
expect_rc "0-row table: bad data, exit 1" 1
expect_grep "0-row table: says it is empty, not that it is not 2-D" err.txt \
    "^fpd-compress: error: rows0.npy: tensor 'rows0' is an empty F32 table \(shape 0x16\): it has no rows to compress"
expect_no_grep "0-row table: no contradiction" err.txt "only 2-D float tables"
run "$C" cols0.npy -o cols0.safetensors
expect_grep "0-column table: says so" err.txt "tensor 'cols0' is an empty F32 table \(shape 16x0\): it has no columns to compress"
run "$BUILD/fpd-suggest" rows0.npy -t rows0
expect_rc "0-row table, fpd-suggest -t: exit 2" 2
expect_grep "0-row table, fpd-suggest -t: says so" err.txt "tensor 'rows0' is an empty F32 table \(shape 0x16\)"
mk_npy over0.npy '(488888888, 8888888888888, 0)'
run "$BUILD/fpd-inspect" over0.npy
expect_rc "zero-size shape whose other dimensions overflow (.npy): refused" 1
expect_grep "zero-size shape whose other dimensions overflow (.npy): says so" err.txt "over0.npy: shape of the array overflows"
# safetensors: "__metadata__": null is no metadata (the reference accepts it); an
# overflowing shape with a zero after it is refused (the library refuses it)
h='{"__metadata__":null,"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}  '
{ printf '\114\000\000\000\000\000\000\000%s' "$h"; printf '\000\000\200\077'; } >nullmeta.safetensors
run "$BUILD/fpd-inspect" nullmeta.safetensors
expect_rc "__metadata__ null: accepted" 0
expect_grep "__metadata__ null: the tensor is listed" out.txt "^w +F32 +\[1\]"
h='{"w":{"dtype":"F32","shape":[488888888,8888888888888,0],"data_offsets":[0,0]}}'
{ printf '\116\000\000\000\000\000\000\000%s' "$h"; } >over0.safetensors
run "$BUILD/fpd-inspect" over0.safetensors
expect_rc "zero-size shape whose other dimensions overflow (safetensors): refused" 1
expect_grep "zero-size shape whose other dimensions overflow (safetensors): says so" err.txt \
    "over0.safetensors: tensor 'w': shape \[488888888, 8888888888888, 0\] of F32 overflows"
