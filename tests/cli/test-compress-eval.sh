# fpd-compress --eval-ncf and --train-interactions on the NCF GMF checkpoint: HR@10 and
# NDCG@10 before and after, in the report's "eval" object.
C="$BUILD/fpd-compress"
N="$DATA/ncf"
if [ ! -f "$N/ncf_gmf8_ml1m.safetensors" ] || [ ! -f "$DATA/movielens-1m/ratings.tsv" ]; then
    skip "fpd-compress --eval-ncf" "NCF data not found under $DATA"
else
    run "$C" "$N/ncf_gmf8_ml1m.safetensors" -o ncf.fpd.safetensors --json --eval-ncf "$N/ml-1m.test.rating" "$N/ml-1m.test.negative"
    expect_rc "eval-ncf: exit 0" 0
    cp out.txt eval.json
    py_check "eval-ncf: HR@10 0.6368 and NDCG@10 0.3691 before (the data README's NumPy values), lower after" "
import json; e = json.load(open('eval.json'))['eval']
assert abs(e['hr10_before'] - 0.6368) <= 0.0005 and abs(e['ndcg10_before'] - 0.3691) <= 0.0005, e
assert 0.2 < e['hr10_after'] < e['hr10_before'], e
# the default (--max-error 0.1: both tables int4, 4x) keeps the model: HR@10 0.6313 (NumPy, data README: 0.631)
assert abs(e['hr10_after'] - 0.6313) <= 0.0005, e"
    "$BUILD/fpd-eval" "$N/ncf_gmf8_ml1m.safetensors" --ncf "$N/ml-1m.test.rating" "$N/ml-1m.test.negative" \
        --movielens "$DATA/movielens-1m/ratings.tsv" --write-train train.tsv >/dev/null 2>&1
    run "$C" "$N/ncf_gmf8_ml1m.safetensors" -o task.safetensors --json --eval-ncf "$N/ml-1m.test.rating" \
        "$N/ml-1m.test.negative" --train-interactions train.tsv --task-epochs 1
    expect_rc "train-interactions: exit 0" 0
    cp out.txt task.json
    py_check "train-interactions: task-aware finetuning raises HR@10 over the fit alone" "
import json; r = json.load(open('task.json')); e = r['eval']; ft = r['task_finetune']
assert ft['positives'] == 994169 and ft['epochs'] == 1, ft
assert e['hr10_after'] > ft['hr10_before_finetune'] + 0.02, (e, ft)"
    run "$BUILD/fpd-inspect" task.safetensors
    expect_grep "train-interactions: the output is an FPD checkpoint" out.txt "user_embedding\.weight .*2x2x2"
    run "$C" "$N/ncf_gmf8_ml1m.safetensors" -o x.safetensors --eval-ncf "$N/ml-1m.test.rating"
    expect_rc "eval-ncf with one file: exit 2" 2
    expect_absent "eval-ncf with one file: no output" x.safetensors
fi
