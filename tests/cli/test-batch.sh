# fpd-batch: a pipeline over three checkpoints (the GloVe sample, the NCF checkpoint or a
# second synthetic one without the shared data, and a synthetic one made here) runs to
# the end; run again it does nothing; --shard 1/2 and 2/2 together give the full run's
# outputs; killed (SIGKILL, SIGTERM) in the middle and rerun it finishes with the same
# outputs; malformed pipelines give one error with line and column and do no work.
B="$BUILD/fpd-batch"
SAMPLE="$ROOT/samples/glove-10k.safetensors"
NCF="$DATA/ncf/ncf_gmf8_ml1m.safetensors"

# le64 N: 8 bytes little-endian
le64() {
    n=$1
    i=0
    while [ $i -lt 8 ]; do
        printf "\\$(printf %03o $((n % 256)))"
        n=$((n / 256))
        i=$((i + 1))
    done
}
# mk_synth FILE TABLE ROWS COLS: a safetensors checkpoint made in the shell: TABLE F32
# [ROWS, COLS] (values: the sample's GloVe numbers, so no NaN), a small dense head.weight [1, 4] (ones)
# and an I64 step counter. ROWS * COLS <= 1,000,000.
mk_synth() {
    nb=$(($3 * $4 * 4))
    h="{\"$2\":{\"dtype\":\"F32\",\"shape\":[$3,$4],\"data_offsets\":[0,$nb]},\"head.weight\":{\"dtype\":\"F32\",\"shape\":[1,4],\"data_offsets\":[$nb,$((nb + 16))]},\"step\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[$((nb + 16)),$((nb + 24))]}}"
    while [ $((${#h} % 8)) -ne 0 ]; do h="$h "; done
    { le64 ${#h}; printf '%s' "$h"; tail -c 4000000 "$SAMPLE" | head -c $nb
      printf '\0\0\200\077\0\0\200\077\0\0\200\077\0\0\200\077\003\0\0\0\0\0\0\0'; } >"$1"
}

mk_synth synth-d.safetensors items.weight 40000 25
if [ -f "$NCF" ]; then
    SECOND="$NCF"
else
    mk_synth ncf-standin.safetensors user_embedding.weight 9000 8
    SECOND="$PWD/ncf-standin.safetensors"
    skip "NCF checkpoint" "$NCF not found; a synthetic stand-in is used"
fi
run "$BUILD/fpd-inspect" synth-d.safetensors
expect_rc "setup: the synthetic checkpoint is valid" 0

# pipeline.yaml in folder $1 (outputs in $1/out)
mk_pipeline() {
    mkdir -p "$1"
    cat >"$1/pipeline.yaml" <<EOF
version: 1
inputs:
  - $SAMPLE
  - $SECOND
  - $PWD/synth-*.safetensors
output:
  folder: out
select:
  exclude: ["*.bias"]
  min_rows: 1000
defaults:
  rank: 4
  epochs: 0
  recall_queries: 0
tables:
  - match: "item_*"
    rank: 2
  - match: "items.*"
    checkpoint: "synth-*"
    epochs: 1
EOF
}

# ---- validation only ----
mk_pipeline full
run "$B" full/pipeline.yaml --check
expect_rc "check: exit 0" 0
expect_grep "check: says valid" out.txt "valid: 3 checkpoint\(s\)"
expect_grep "check: per-table plan" out.txt "items.weight +40000x25 .*compress \(pass 1\): r=4"
expect_absent "check: does no work" full/out
run "$B" full/pipeline.yaml --check --json
expect_rc "check --json: exit 0" 0
py_check "check --json: the plan" "
import json; r = json.load(open('out.txt'))
assert r['schema'] == 'fpd-batch-plan/1' and len(r['checkpoints']) == 3
t = [t for c in r['checkpoints'] for t in c['tables'] if t['name'] == 'items.weight'][0]
assert t['selected'] and t['r'] == 4 and t['settings']['epochs'] == 1 and t['pass'] == 1, t
assert all(c['state'] == 'todo' for c in r['checkpoints'])"
expect_absent "check --json: does no work" full/out

# ---- the full run, then nothing to do ----
run "$B" full/pipeline.yaml
expect_rc "full run: exit 0" 0
expect_grep "full run: three compressed" out.txt "^3 checkpoint\(s\): 3 written now, 0 already done, 0 failed"
for f in glove-10k ncf_gmf8_ml1m synth-d; do
    [ "$f" = ncf_gmf8_ml1m ] && [ ! -f "$NCF" ] && f=ncf-standin
    expect_exists "full run: $f output" "full/out/$f.fpd.safetensors"
done
expect_exists "full run: JSON report" full/out/report.json
expect_grep "full run: Markdown report row" full/out/report.md "^\| synth-d.safetensors \| items.weight \| 40000x25 \| F32 \| 4 \| 1 \| 3 \|"
expect_grep "full run: Markdown keeps the dense tables with a reason" full/out/report.md "dense: "
expect_no_temp "full run: no temporary files" full/out
if ls -a full/out | grep -q 'batch-'; then _report "not ok" "full run: no intermediates left"; else _report ok "full run: no intermediates left"; fi
py_check "full run: the JSON report has every table of every checkpoint" "
import json
r = json.load(open('full/out/report.json'))
assert r['schema'] == 'fpd-batch/1' and r['totals']['done'] == 3 and r['totals']['pending'] == 0, r['totals']
names = {(c['input'].split('/')[-1], t['name']): t for c in r['checkpoints'] for t in c['tables']}
t = names[('synth-d.safetensors', 'items.weight')]
assert t['compressed'] and t['r'] == 4 and t['settings']['epochs'] == 1 and t['settings']['rank'] == 4, t
assert t['finetune_epochs'] == 1, t
assert names[('glove-10k.safetensors', 'word_embeddings.weight')]['settings']['epochs'] == 0
for (ck, n), t in names.items():
    assert 'selected' in t and 'bytes_before' in t and 'bytes_after' in t, t
    if not t['compressed']: assert t.get('reason'), t
if ('ncf_gmf8_ml1m.safetensors', 'item_embedding.weight') in names:
    assert names[('ncf_gmf8_ml1m.safetensors', 'item_embedding.weight')]['r'] == 2
    assert names[('ncf_gmf8_ml1m.safetensors', 'user_embedding.weight')]['r'] == 4
    assert not names[('ncf_gmf8_ml1m.safetensors', 'prediction.weight')]['compressed']
tot = r['totals']
assert tot['bytes_before'] == sum(c['totals']['bytes_before'] for c in r['checkpoints'])"
mkdir -p keep && cp full/out/*.fpd.safetensors keep/
run "$B" full/pipeline.yaml
expect_rc "rerun: exit 0" 0
expect_grep "rerun: does nothing" out.txt "^3 checkpoint\(s\): 0 written now, 3 already done"
same=ok
for f in keep/*; do cmp -s "$f" "full/out/$(basename "$f")" || same="not ok"; done
_report "$same" "rerun: outputs unchanged"
run "$B" full/pipeline.yaml --json
expect_rc "rerun --json: exit 0" 0
py_check "rerun --json: the report on stdout" "
import json; r = json.load(open('out.txt')); assert r['schema'] == 'fpd-batch/1' and r['totals']['done'] == 3
assert not any(c['this_run'] for c in r['checkpoints'])"

# a finished output that was changed is redone; a file the pipeline did not write is refused
printf 'x' >>full/out/synth-d.fpd.safetensors
run "$B" full/pipeline.yaml
expect_rc "changed output: exit 0" 0
expect_grep "changed output: redone" out.txt "synth-d.safetensors: redoing \(output size"
if cmp -s keep/synth-d.fpd.safetensors full/out/synth-d.fpd.safetensors; then _report ok "changed output: redone to the same bytes"
else _report "not ok" "changed output: redone to the same bytes"; fi
rm full/out/.fpd-batch/glove-10k.fpd.safetensors.state.json
run "$B" full/pipeline.yaml
expect_rc "output without a record: exit 2" 2
expect_grep "output without a record: says --force" err.txt "glove-10k.fpd.safetensors: exists and was not written by this pipeline.*--force"
run "$B" full/pipeline.yaml --force
expect_rc "output without a record, --force: exit 0" 0

# ---- shards: 1/2 and 2/2 together are the full run ----
mk_pipeline shard
run "$B" shard/pipeline.yaml --shard 1/2
expect_rc "shard 1/2: exit 0" 0
n1=$(sed -n 's/^3 checkpoint(s): \([0-9]*\) written now.*/\1/p' out.txt)
run "$B" shard/pipeline.yaml --shard 2/2
expect_rc "shard 2/2: exit 0" 0
n2=$(sed -n 's/^3 checkpoint(s): \([0-9]*\) written now.*/\1/p' out.txt)
# the hash of the output names puts synth-d in shard 1, the other two in shard 2
if [ "$((n1 + n2))" -eq 3 ] && [ "$n1" -ge 1 ] && [ "$n2" -ge 1 ]; then _report ok "shards: each checkpoint done once ($n1 + $n2)"
else _report "not ok" "shards: each checkpoint done once" "$n1 + $n2"; fi
expect_grep "shard 2/2: the report counts both shards" out.txt "3 of 3 done overall"
same=ok
for f in keep/*; do cmp -s "$f" "shard/out/$(basename "$f")" || same="not ok"; done
_report "$same" "shards: union equals the full run, byte for byte"
run "$B" shard/pipeline.yaml --shard 0/2
expect_rc "shard 0/2: exit 2" 2
run "$B" shard/pipeline.yaml --shard 3/2
expect_rc "shard 3/2: exit 2" 2
expect_grep "shard 3/2: says the form" err.txt "--shard expects I/N with 1 <= I <= N"

# ---- interrupted runs: kill -9 and SIGTERM, then rerun ----
# wait_first DIR PID: until an output exists in DIR (or the run ends), at most ~30 s
wait_first() {
    i=0
    while [ $i -lt 3000 ] && kill -0 "$2" 2>/dev/null && ! ls "$1"/*.fpd.safetensors >/dev/null 2>&1; do
        sleep 0.01
        i=$((i + 1))
    done
}
mk_pipeline kill
"$B" kill/pipeline.yaml >kill.out 2>kill.err &
pid=$!
wait_first kill/out $pid
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
partial=ok
for f in kill/out/*.fpd.safetensors; do
    [ -e "$f" ] || continue
    cmp -s "$f" "keep/$(basename "$f")" || partial="not ok"
done
_report "$partial" "kill -9: every output present is complete ($(ls kill/out/*.fpd.safetensors 2>/dev/null | wc -l) of 3)"
run "$B" kill/pipeline.yaml
expect_rc "after kill -9: rerun exits 0" 0
same=ok
for f in keep/*; do cmp -s "$f" "kill/out/$(basename "$f")" || same="not ok"; done
_report "$same" "after kill -9: the same outputs as the full run"
if ls -a kill/out | grep -Eq 'batch-|\.tmp-'; then _report "not ok" "after kill -9: leftovers removed" "$(ls -a kill/out)"
else _report ok "after kill -9: leftovers removed"; fi

mk_pipeline term
"$B" term/pipeline.yaml >term.out 2>term.err &
pid=$!
wait_first term/out $pid
kill -TERM $pid 2>/dev/null
wait $pid
trc=$?
if [ "$trc" -eq 143 ] || [ "$trc" -eq 0 ]; then _report ok "SIGTERM: exit 143 (or 0 when it had finished): $trc"
else _report "not ok" "SIGTERM: exit 143" "exit $trc: $(cat term.err)"; fi
[ "$trc" -eq 143 ] && expect_grep "SIGTERM: says it was interrupted" term.err "interrupted; .* was not written"
[ "$trc" -eq 143 ] && expect_no_grep "SIGTERM: one message, not also the pass's 'nothing was written'" term.err "nothing was written"
if ls -a term/out | grep -Eq 'batch-|\.tmp-'; then _report "not ok" "SIGTERM: no intermediates left" "$(ls -a term/out)"
else _report ok "SIGTERM: no intermediates left"; fi
run "$B" term/pipeline.yaml
expect_rc "after SIGTERM: rerun exits 0" 0
same=ok
for f in keep/*; do cmp -s "$f" "term/out/$(basename "$f")" || same="not ok"; done
_report "$same" "after SIGTERM: the same outputs as the full run"

# ---- malformed pipelines: one error with FILE:LINE:COLUMN, no work ----
mkdir -p bad
# bad_case NAME EXIT PATTERN: run bad/p.yaml (already written)
bad_case() {
    run "$B" bad/p.yaml
    expect_rc "$1: exit $2" "$2"
    expect_lines "$1: one line" err.txt 1
    expect_grep "$1: names file, line and column" err.txt "$3"
    expect_absent "$1: no work" bad/out
}
printf 'inputs:\n  - %s\noutput:\n  folder: [out\n' "$SAMPLE" >bad/p.yaml
bad_case "syntax error" 2 "^fpd-batch: error: bad/p.yaml:5:1: YAML syntax error: did not find expected ',' or '\]'"
printf 'inputs:\n  - %s\noutput:\n  folder: out\ndefaults:\n  rnak: 4\n' "$SAMPLE" >bad/p.yaml
bad_case "unknown key" 2 "^fpd-batch: error: bad/p.yaml:6:3: unknown key 'rnak' in 'defaults' \(did you mean 'rank'\?\)"
printf 'inputs:\n  - %s\noutput:\n  folder: out\ntables:\n  - match: "*"\n    epochs: two\n' "$SAMPLE" >bad/p.yaml
bad_case "wrong type" 2 "^fpd-batch: error: bad/p.yaml:7:13: 'epochs' must be an integer, got 'two'"
printf 'inputs:\n  - %s\n  - nowhere/model.safetensors\noutput:\n  folder: out\n' "$SAMPLE" >bad/p.yaml
bad_case "missing input" 2 "^fpd-batch: error: bad/p.yaml:3:5: input 'nowhere/model.safetensors' does not exist"
mkdir -p bad/a bad/b
cp synth-d.safetensors bad/a/m.safetensors
cp synth-d.safetensors bad/b/m.safetensors
printf 'inputs:\n  - a/m.safetensors\n  - b/m.safetensors\noutput:\n  folder: out\n' >bad/p.yaml
bad_case "duplicate output path" 2 "^fpd-batch: error: bad/p.yaml:3:5: duplicate output path 'bad/out/m.fpd.safetensors'"
printf 'inputs:\n  - "a/*.npy"\noutput:\n  folder: out\n' >bad/p.yaml
bad_case "pattern without a match" 2 "^fpd-batch: error: bad/p.yaml:2:5: input pattern 'a/\*.npy' matches no file"
printf 'inputs:\n  - a/m.safetensors\noutput:\n  folder: out\n  folder: out2\n' >bad/p.yaml
bad_case "duplicate key" 2 "^fpd-batch: error: bad/p.yaml:5:3: duplicate key 'folder' in 'output' \(first at line 4\)"
printf 'inputs:\n  - a/m.safetensors\n' >bad/p.yaml
bad_case "missing output" 2 "^fpd-batch: error: bad/p.yaml:1:1: missing the required key 'output'"
printf 'inputs:\n  - a/m.safetensors\noutput:\n  folder: out\ntables:\n  - match: "*"\n    budget: lots\n' >bad/p.yaml
bad_case "budget not a size" 2 "^fpd-batch: error: bad/p.yaml:7:13: 'budget' must be a size in bytes > 0"
printf 'inputs:\n  - a/m.safetensors\noutput:\n  folder: out\ndefaults:\n  ratio: 0.5\n' >bad/p.yaml
bad_case "ratio out of range" 2 "^fpd-batch: error: bad/p.yaml:6:10: 'ratio' must be a number > 1, got 0.5"
printf 'inputs:\n  - a/m.safetensors\noutput:\n  folder: out\ndefaults:\n  device: cuda\n' >bad/p.yaml
run "$B" bad/p.yaml
if "$B" --version | grep -q cuda && [ "$rc" -eq 0 ]; then
    skip "device: cuda without a device" "this build has CUDA and a device"
    rm -rf bad/out
else
    bad_case "device: cuda without a device" 3 "^fpd-batch: error: bad/p.yaml:6:11: device: cuda, but no CUDA device is available"
fi
printf 'inputs:\n  - a/m.safetensors\noutput:\n  folder: out\ndefaults:\n  device: gpu\n' >bad/p.yaml
bad_case "device not in auto|cpu|cuda" 2 "bad/p.yaml:6:11: 'device' must be auto, cpu or cuda, got 'gpu'"

# ---- planner targets: budget, ratio, max_error resolve to an (r, p, k) per table ----
mkdir -p tg
cat >tg/p.yaml <<EOF
inputs:
  - $SAMPLE
  - $PWD/synth-d.safetensors
output:
  folder: out
tables:
  - match: "word_*"
    budget: 40KiB
  - match: "items.*"
    ratio: 50
EOF
run "$B" tg/p.yaml --check --json
expect_rc "targets: check exits 0" 0
py_check "targets: the plan meets the budget and the ratio" "
import json; r = json.load(open('out.txt'))
t = {t['name']: t for c in r['checkpoints'] for t in c['tables']}
w, i = t['word_embeddings.weight'], t['items.weight']
assert w['selected'] and w['bytes_after'] <= 40 * 1024 and w['settings']['budget'] == 40960, w
assert i['selected'] and i['ratio'] >= 50 and i['settings']['ratio'] == 50, i"
printf 'inputs:\n  - %s\noutput:\n  folder: out\ndefaults:\n  budget: 100\n' "$SAMPLE" >tg/q.yaml
run "$B" tg/q.yaml
expect_rc "targets: a budget no candidate meets: exit 2" 2
expect_grep "targets: says which table" err.txt "word_embeddings.weight"
expect_absent "targets: no work" tg/out

# max_error is checked against the fit, not only the prediction: the sample at 0.85 gets
# the planner's candidate predicted at 0.83 and fits to 0.87 without finetuning (a
# warning, meets_max_error false, the Markdown status), at 0.92 it meets it; the reason
# names the target, not the (r, p, k) the planner's choice is passed on as
for me in 0.85 0.92; do
    printf 'inputs:\n  - %s\noutput:\n  folder: out%s\ndefaults:\n  epochs: 0\n  recall_queries: 0\ntables:\n  - match: "word_*"\n    max_error: %s\n' "$SAMPLE" "$me" "$me" >tg/e$me.yaml
    run "$B" tg/e$me.yaml
    expect_rc "max_error $me: exit 0" 0
    py_check "max_error $me: the report says whether the fit meets it, the warning iff it does not, the reason names it" "
import json, re
t = json.load(open('tg/out$me/report.json'))['checkpoints'][0]['tables'][0]
err = open('err.txt').read()
met = t['rel_error'] <= $me
assert t['max_error'] == $me and t['meets_max_error'] == met, t
assert t['why'].startswith('max_error $me: ') and 'rank' not in t['why'], t['why']
assert ('above its max_error $me' in err) == (not met), err
md = open('tg/out$me/report.md').read()
assert ('compressed, above max_error $me |' in md) == (not met), md
assert met == ('$me' == '0.92'), (t['rel_error'], $me)"
done

# a checkpoint that fails at run time (a table with NaN, found when it is compressed):
# with -k the others are done, exit 1, and the reports say why it failed
py_check "setup: a .npy table with one NaN" "
import numpy as np
a = np.ones((1200, 8), np.float32); a[77, 3] = np.nan; np.save('kf-nan.npy', a)"
mkdir -p kf
printf 'inputs:\n  - %s\n  - %s\noutput:\n  folder: out\ndefaults:\n  rank: 2\n  epochs: 0\n  recall_queries: 0\n' "$PWD/kf-nan.npy" "$SAMPLE" >kf/p.yaml
run "$B" kf/p.yaml -k
expect_rc "keep going past a failed checkpoint: exit 1" 1
expect_grep "keep going: the failure on stderr" err.txt "kf-nan.npy: failed; .* was not written"
py_check "keep going: the other checkpoint done, the failed one with its error in both reports" "
import json
r = {c['input'].split('/')[-1]: c for c in json.load(open('kf/out/report.json'))['checkpoints']}
assert r['glove-10k.safetensors']['status'] == 'done', r
f = r['kf-nan.npy']
assert f['status'] == 'failed' and 'row 77, column 3 is NaN' in f['error'], f
assert 'failed: ' in open('kf/out/report.md').read()"

# ---- free_coords: every FPD table of the pipeline gets c free coordinates (free/1) ----
mkdir -p fc
printf 'inputs:\n  - %s\noutput:\n  folder: out\ndefaults:\n  rank: 4\n  epochs: 0\n  recall_queries: 0\ntables:\n  - match: "word_*"\n    free_coords: 2\n' "$SAMPLE" >fc/p.yaml
run "$B" fc/p.yaml --json
expect_rc "free_coords: exit 0" 0
py_check "free_coords: the settings and the table's report carry c = 2, its bytes counted" "
import json; r = json.load(open('out.txt'))
t = [t for c in r['checkpoints'] for t in c['tables'] if t['name'] == 'word_embeddings.weight'][0]
assert t['settings']['free_coords'] == 2, t['settings']
assert t['free_coords'] == 2 and t['free_params'] == 10000 * 2 + 2 * 100, t"
run "$BUILD/fpd-inspect" fc/out/glove-10k.fpd.safetensors --verify
expect_rc "free_coords: the output verifies" 0
expect_grep "free_coords: the output has them" out.txt "free coordinates c = 2 \(E \[10000, 2\], P \[2, 100\]\)"
printf 'inputs:\n  - %s\noutput:\n  folder: out\ndefaults:\n  free_coords: -1\n' "$SAMPLE" >bad/p.yaml
bad_case "free_coords negative" 2 "bad/p.yaml:6:16: 'free_coords' must be"
printf 'inputs:\n  - %s\noutput:\n  folder: out\ndefaults:\n  free_coords: 101\n' "$SAMPLE" >bad/p.yaml
run "$B" bad/p.yaml
expect_rc "free_coords above D: exit 2" 2
expect_grep "free_coords above D: names the table" err.txt "tensor 'word_embeddings.weight' has dimension 100; 101 free coordinates"
# free_dtype: int4 stores E as int4 rows (free-rowwise/1), as fpd-compress --free-dtype int4
printf 'inputs:\n  - %s\noutput:\n  folder: out\ndefaults:\n  rank: 4\n  epochs: 0\n  recall_queries: 0\ntables:\n  - match: "word_*"\n    free_coords: 2\n    free_dtype: int4\n' "$SAMPLE" >fc/q.yaml
run "$B" fc/q.yaml --json
expect_rc "free_dtype int4: exit 0" 0
cp out.txt fc/q.json
run "$BUILD/fpd-compress" "$SAMPLE" -o fc/q-ref.safetensors --rank 4 --epochs 0 --queries 0 --free-coords 2 --free-dtype int4 --json
expect_rc "free_dtype int4: the fpd-compress reference: exit 0" 0
py_check "free_dtype int4: the settings say it; E's bytes and the error are fpd-compress --free-dtype int4's" "
import json
t = [t for c in json.load(open('fc/q.json'))['checkpoints'] for t in c['tables'] if t['name'] == 'word_embeddings.weight'][0]
ref = json.load(open('out.txt'))['tables'][0]
assert t['settings']['free_dtype'] == 'int4' and t['free_dtype'] == 'int4', t
assert t['free_bytes'] == ref['free_bytes'] == 10000 * (1 + 4) + 2 * 100 * 4, (t['free_bytes'], ref['free_bytes'])
assert abs(t['rel_error'] / ref['rel_error'] - 1) < 1e-5, (t['rel_error'], ref['rel_error'])"
run "$BUILD/fpd-inspect" fc/out/glove-10k.fpd.safetensors --verify
expect_grep "free_dtype int4: the output stores int4 E" out.txt "E \[10000, 2\] int4"
printf 'inputs:\n  - %s\noutput:\n  folder: out\ndefaults:\n  free_dtype: int3\n' "$SAMPLE" >bad/p.yaml
bad_case "free_dtype int3" 2 "bad/p.yaml:6:15: 'free_dtype' must be core, int8, int4, int8-sym or int4-sym"
printf 'inputs:\n  - %s\noutput:\n  folder: out\ndefaults:\n  rank: 4\n  free_dtype: int4\n' "$SAMPLE" >bad/p.yaml
run "$B" bad/p.yaml
expect_rc "free_dtype without free_coords: exit 2" 2
expect_grep "free_dtype without free_coords: names the table and why" err.txt "table 'word_embeddings.weight': 'free_dtype: int4' stores the free coordinates' E: it needs free coordinates"

# ---- order_from: a table's rows ordered from implicit feedback, as fpd-compress --order-from ----
# ord/x.tsv (found next to the YAML, which is not the working folder): 40 users, 6
# items each, even users items 0-9 and odd users 10-19 (the data of test-init's
# --order-from case); ord/y.tsv the same lines with the columns swapped and the ids
# 1-based, so order_column: 2 and id_base: 1 must order the rows as x.tsv does
mkdir -p ord
mk_synth ord/t.safetensors weight 40 8
awk 'BEGIN { for (u = 0; u < 40; u++) for (j = 0; j < 6; j++) printf "%d\t%d\n", u, (u * 7 + j * 3) % 10 + (u % 2) * 10 }' >ord/x.tsv
awk '{ printf "%d\t%d\n", $2 + 1, $1 + 1 }' ord/x.tsv >ord/y.tsv
ORD_YAML='inputs:\n  - t.safetensors\noutput:\n  folder: %s\ndefaults:\n  rank: 2\n  cores: 2\n  epochs: 0\n  recall_queries: 0\ntables:\n  - match: weight\n    compress: true\n%b'
printf "$ORD_YAML" out '    order_from: x.tsv\n' >ord/p.yaml
printf "$ORD_YAML" out2 '    order_from: y.tsv\n    order_column: 2\n    id_base: 1\n' >ord/p2.yaml
run "$BUILD/fpd-compress" ord/t.safetensors -o ord/ref.safetensors --tables weight --rank 2 --cores 2 --epochs 0 \
    --queries 0 --order-from ord/x.tsv
expect_rc "order_from: the fpd-compress reference: exit 0" 0
run "$B" ord/p.yaml --check
expect_grep "order_from: --check names the file, resolved next to the YAML" out.txt \
    "weight .*order_from ord/x.tsv \(column 1, id_base 0\)"
run "$B" ord/p.yaml --json
expect_rc "order_from: exit 0" 0
cp out.txt ord/r1.json
run "$B" ord/p2.yaml --json
expect_rc "order_from + order_column 2 + id_base 1: exit 0" 0
cp out.txt ord/r2.json
py_check "order_from: the settings and the report name the order" "
import json
t = [t for c in json.load(open('ord/r1.json'))['checkpoints'] for t in c['tables'] if t['name'] == 'weight'][0]
s = t['settings']
assert (s['order_from'], s['order_column'], s['id_base']) == ('ord/x.tsv', 1, 0), s
assert t['row_order'] == '240 interactions of ord/x.tsv, column 1' and t['row_perm'] is True, t
t = [t for c in json.load(open('ord/r2.json'))['checkpoints'] for t in c['tables'] if t['name'] == 'weight'][0]
s = t['settings']
assert (s['order_from'], s['order_column'], s['id_base']) == ('ord/y.tsv', 2, 1), s
assert t['row_order'] == '240 interactions of ord/y.tsv, column 2', t"
py_check "order_from: both outputs hold fpd-compress --order-from's row_perm and cores; each leading-digit block one group" "
import sys; sys.path.insert(0, '$(dirname "$CHECK")')
import numpy as np
from fpd_check import read_st
ref = read_st('ord/ref.safetensors')[0]
assert 'weight.fpd.row_perm' in ref, sorted(ref)
for out in ('ord/out/t.fpd.safetensors', 'ord/out2/t.fpd.safetensors'):
    got = read_st(out)[0]
    assert sorted(got) == sorted(ref), (out, sorted(got), sorted(ref))
    for k in ref: # the order exactly; the cores to rounding (equal bits from one build)
        g, r = got[k].astype(np.float64), ref[k].astype(np.float64)
        assert got[k].dtype == ref[k].dtype and g.shape == r.shape, (out, k)
        assert np.abs(g - r).max() <= (0 if k.endswith('row_perm') else 1e-5 * np.abs(r).max()), (out, k)
p = ref['weight.fpd.row_perm']
assert sorted(p.tolist()) == list(range(40)), p
for blk in range(8):
    users = [u for u in range(40) if p[u] // 5 == blk]
    assert len({u % 2 for u in users}) <= 1, (blk, users)"
printf 'inputs:\n  - %s\noutput:\n  folder: out\ndefaults:\n  order_from: nope.tsv\n' "$SAMPLE" >bad/p.yaml
bad_case "order_from: a missing file" 2 "bad/p.yaml:6:15: 'order_from' file 'bad/nope.tsv' does not exist"
printf 'inputs:\n  - %s\noutput:\n  folder: out\ndefaults:\n  order_from: ../ord/x.tsv\n  order_column: 3\n' "$SAMPLE" >bad/p.yaml
bad_case "order_column 3" 2 "bad/p.yaml:7:17: 'order_column' must be 1 or 2"
printf 'inputs:\n  - %s\noutput:\n  folder: out\ndefaults:\n  order_from: ../ord/x.tsv\n  id_base: -1\n' "$SAMPLE" >bad/p.yaml
bad_case "id_base negative" 2 "bad/p.yaml:7:12: 'id_base' must be an integer >= 0"
printf 'inputs:\n  - %s\noutput:\n  folder: out\ntables:\n  - match: "*"\n    order_column: 2\n' "$SAMPLE" >bad/p.yaml
bad_case "order_column without order_from" 2 "bad/p.yaml:7:5: 'order_column' goes with 'order_from'"
mk_synth ord/t20.safetensors weight 20 8
printf "$ORD_YAML" out3 '    order_from: x.tsv\n' | sed 's/t\.safetensors/t20.safetensors/' >ord/p3.yaml
run "$B" ord/p3.yaml
expect_rc "order_from: ids beyond the table's rows: exit 2 (before any work)" 2
expect_grep "order_from: ids beyond the table's rows: says which" err.txt \
    "t20.safetensors: table 'weight': order_from ord/x.tsv: ids up to 39 in column 1, but the table has 20 rows"
expect_absent "order_from: ids beyond the table's rows: no work" ord/out3

# ---- free_coords: auto with a budget: the planner's c per table, as fpd-suggest plans ----
printf 'inputs:\n  - %s\noutput:\n  folder: out\ndefaults:\n  epochs: 0\n  recall_queries: 0\ntables:\n  - match: "word_*"\n    budget: 150KB\n    free_coords: auto\n' "$SAMPLE" >fc/auto.yaml
run "$BUILD/fpd-suggest" "$SAMPLE" --budget 150KB --free-coords auto --json
cp out.txt fc/suggest.json
run "$B" fc/auto.yaml --check --json
expect_rc "free_coords auto: --check exits 0" 0
py_check "free_coords auto: --check plans fpd-suggest's (r, p, k, c) and its bytes (cores + E + P)" "
import json; r = json.load(open('out.txt')); s = json.load(open('fc/suggest.json'))['tables'][0]['selected']
t = [t for c in r['checkpoints'] for t in c['tables'] if t['name'] == 'word_embeddings.weight'][0]
assert s['free_coords'] == 2 and s['r'] == 10, s
assert (t['r'], t['p'], t['k'], t['free_coords'], t['bytes_after']) == (s['r'], s['p'], s['k'], 2, s['bytes']), (t, s)
assert t['bytes_after'] <= 150000 and t['settings']['free_coords'] == 'auto', t"
run "$B" fc/auto.yaml --check
expect_grep "free_coords auto: --check text shows c" out.txt "word_embeddings.weight .* r=10 p=1 k=3 c=2 "
rm -rf fc/out
run "$B" fc/auto.yaml --json
expect_rc "free_coords auto: exit 0" 0
py_check "free_coords auto: the output table has c = 2 and the planned bytes" "
import json; r = json.load(open('out.txt'))
t = [t for c in r['checkpoints'] for t in c['tables'] if t['name'] == 'word_embeddings.weight'][0]
assert t['free_coords'] == 2 and t['r'] == 10 and t['bytes_after'] == 121800, t"
printf 'inputs:\n  - %s\noutput:\n  folder: out\ndefaults:\n  free_coords: auto\n' "$SAMPLE" >bad/p.yaml
run "$B" bad/p.yaml --check
expect_rc "free_coords auto without a target: exit 2" 2
expect_grep "free_coords auto without a target: says it needs one" err.txt \
    "'free_coords: auto' needs a target .*budget, ratio or max_error"
printf 'inputs:\n  - %s\noutput:\n  folder: out\ndefaults:\n  free_coords: car\n' "$SAMPLE" >bad/p.yaml
bad_case "free_coords neither auto nor a count" 2 "bad/p.yaml:6:16: 'free_coords' must be auto or an integer"

run "$B" --help
expect_rc "help exits 0" 0
expect_grep "help on stdout" out.txt "^Usage: fpd-batch \[options\] PIPELINE.yaml"
run "$B" --version
expect_grep "version lists features" out.txt "^fpd-batch [0-9.]+ \(cpu"
run "$B"
expect_rc "no pipeline: exit 2" 2
run "$B" missing.yaml
expect_rc "missing pipeline file: exit 2" 2
expect_grep "missing pipeline file: named" err.txt "^fpd-batch: error: missing.yaml: cannot read the pipeline file"
run "$B" "$ROOT/samples/pipeline.yaml" --check
expect_rc "samples/pipeline.yaml is valid" 0
