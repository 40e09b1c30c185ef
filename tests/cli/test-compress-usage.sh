# fpd-compress: bad invocations exit non-zero with one clear line on stderr
# (plus the --help hint for usage errors) and create no file.
C="$BUILD/fpd-compress"
cp "$ROOT/samples/glove-10k.safetensors" in.safetensors

run "$C" --help
expect_rc "help exits 0" 0
expect_grep "help on stdout" out.txt "^Usage: fpd-compress IN -o OUT"

run "$C" --version
expect_rc "version exits 0" 0
expect_grep "version lists features" out.txt "^fpd-compress [0-9.]+ \(cpu"

run "$C" missing.safetensors -o out.safetensors
expect_rc "missing input: exit 1" 1
expect_lines "missing input: one line" err.txt 1
expect_grep "missing input: names the file" err.txt "^fpd-compress: error: missing.safetensors: no such file"
expect_absent "missing input: no output" out.safetensors

printf 'user,item\n1,2\n' > notes.csv
run "$C" notes.csv -o out.safetensors
expect_rc "not a checkpoint: exit 1" 1
expect_lines "not a checkpoint: one line" err.txt 1
expect_grep "not a checkpoint: names the file" err.txt "^fpd-compress: error: notes.csv: "
expect_absent "not a checkpoint: no output" out.safetensors

head -c 4000 in.safetensors > truncated.safetensors
run "$C" truncated.safetensors -o out.safetensors
expect_rc "truncated checkpoint: exit 1" 1
expect_grep "truncated checkpoint: says where" err.txt "^fpd-compress: error: truncated.safetensors: .*"
expect_absent "truncated checkpoint: no output" out.safetensors

sum_before=$(cksum < in.safetensors)
run "$C" in.safetensors -o in.safetensors
expect_rc "OUT equal to IN: exit 2" 2
expect_grep "OUT equal to IN: says so" err.txt "is the input"
ln -s in.safetensors link.safetensors
run "$C" in.safetensors -o link.safetensors --force
expect_rc "OUT a link to IN: exit 2" 2
run "$C" in.safetensors -o ./in.safetensors --force
expect_rc "OUT another path to IN: exit 2" 2
if [ "$(cksum < in.safetensors)" = "$sum_before" ]; then _report ok "input untouched"; else _report "not ok" "input untouched"; fi

run "$C" in.safetensors -o out.safetensors --frobnicate
expect_rc "unknown flag: exit 2" 2
expect_grep "unknown flag: named" err.txt "^fpd-compress: error: unknown option '--frobnicate'"
expect_grep "unknown flag: hint" err.txt "^Try 'fpd-compress --help'"
expect_lines "unknown flag: two lines" err.txt 2
expect_absent "unknown flag: no output" out.safetensors

run "$C" in.safetensors
expect_rc "no -o: exit 2" 2
run "$C" -o out.safetensors
expect_rc "no input: exit 2" 2
run "$C" in.safetensors -o out.safetensors --rank 0
expect_rc "rank 0: exit 2" 2
expect_grep "rank 0: says why" err.txt "--rank expects an integer >= 1, got '0'"
run "$C" in.safetensors -o out.safetensors --rank abc
expect_rc "rank not a number: exit 2" 2
run "$C" in.safetensors -o out.safetensors --tables nope
expect_rc "unknown table: exit 2" 2
expect_grep "unknown table: named" err.txt "no tensor named 'nope'"
expect_absent "bad flags: no output" out.safetensors

echo keep > exists.safetensors
run "$C" in.safetensors -o exists.safetensors
expect_rc "existing OUT without --force: exit 2" 2
expect_grep "existing OUT: says --force" err.txt "use --force"
expect_grep "existing OUT: unchanged" exists.safetensors "^keep$"

run "$C" in.safetensors -o no/such/dir/out.safetensors --epochs 0 --rank 4
expect_rc "unwritable OUT: exit 1" 1
expect_grep "unwritable OUT: names it" err.txt "no/such/dir"
expect_no_temp "no temporary files left" .

# a folder or a .npy name as OUT: refused before any work
mkdir sub
run "$C" in.safetensors -o sub --force
expect_rc "OUT a folder: exit 2" 2
expect_grep "OUT a folder: says so" err.txt "is a folder"
run "$C" in.safetensors -o out.npy
expect_rc "OUT named .npy: exit 2" 2
expect_absent "OUT named .npy: no file" out.npy

if have_python_numpy; then
    python3 -c "
import numpy as np
a = np.ones((1200, 8), np.float32); a[77, 3] = np.nan; np.save('nan.npy', a)
np.save('ints.npy', np.arange(1200 * 8, dtype=np.int32).reshape(1200, 8))
np.save('vec.npy', np.ones(1200, np.float32))
np.save('small.npy', np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32))"
    run "$C" nan.npy -o out.safetensors
    expect_rc "NaN in the table: exit 1" 1
    expect_grep "NaN in the table: names row and column" err.txt "row 77, column 3 is NaN"
    expect_absent "NaN in the table: no output" out.safetensors
    run "$C" ints.npy -o out.safetensors
    expect_rc "integer .npy: bad data, exit 1" 1
    expect_grep "integer .npy: says what it is" err.txt "is an I32 tensor with 2 dimension"
    run "$C" vec.npy -o out.safetensors
    expect_rc "1-D .npy: bad data, exit 1" 1
    expect_absent "not a table: no output" out.safetensors
    # a .npy obeys --min-rows and --min-ratio like any table (issue 14.6), unless named
    run "$C" small.npy -o small.fpd.safetensors --rank 2 --epochs 0 --json
    expect_rc "small .npy: exit 0" 0
    expect_grep "small .npy: kept dense by --min-rows" out.txt '"reason": "300 rows < --min-rows 1000"'
    run "$C" small.npy -o small2.fpd.safetensors --rank 2 --epochs 0 --tables small --json
    expect_rc "small .npy named by --tables: exit 0" 0
    expect_grep "small .npy named by --tables: compressed" out.txt '"compressed": true'
    python3 -c "
import numpy as np; np.save('one.npy', np.ones((1, 1), np.float32))"
    run "$C" one.npy -o one.fpd.safetensors --json
    expect_rc "1 x 1 .npy: exit 0" 0
    expect_grep "1 x 1 .npy: kept dense, not 0.33x" out.txt '"compressed": false'
    expect_grep "1 x 1 .npy: ratio 1" out.txt '"ratio": 1(\.0)?,'
else
    skip "non-finite and non-float tables" "python3 with numpy not available"
fi

# nothing qualifies: a copy, and a warning saying so
run "$C" in.safetensors -o copy.safetensors --min-rows 100000
expect_rc "nothing qualifies: exit 0" 0
expect_grep "nothing qualifies: warns" err.txt "^fpd-compress: warning: .*no table qualified"
if cmp -s in.safetensors copy.safetensors; then _report ok "nothing qualifies: output equals input"; else
    # the writer may order or pad the header differently; the tensor bytes must match
    py_check "nothing qualifies: same tensors" "
import sys; sys.path.insert(0, '$(dirname "$CHECK")')
from fpd_check import read_st  # fpd_check
a, _ = read_st('in.safetensors'); b, _ = read_st('copy.safetensors')
assert a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)"
fi
