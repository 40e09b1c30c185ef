#!/bin/sh
# CLI tests: runs every tests/cli/test-*.sh case with the helpers of tests/cli/lib.sh,
# each in a fresh temporary folder. Usage: sh tests/cli/run.sh BUILD_DIR
# Prints one line per check and a closing "N passed, N failed" line; exits 1 on failure.
# FPD_CLI_ONLY=PATTERN runs only the scripts whose name (test-NAME) matches the shell
# pattern, e.g. FPD_CLI_ONLY=test-python sh tests/cli/run.sh build.
# FPD_CLI_JOBS=N runs N scripts at a time (default: the number of CPUs, at most 4).
# Each script's lines are printed together, in the scripts' order, once all have run;
# while they run, one line a script says when it is done (with its counts and time).
set -u
BUILD=$(cd "${1:-build}" && pwd)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA=${FPD_DATA_DIR:-$ROOT/../shared/data}
CHECK=${FPD_CHECK:-$(dirname "$DATA")/tools/fpd_check.py}
export BUILD ROOT DATA CHECK

# one script: sh run.sh --one BUILD SCRIPT LOGDIR (what xargs runs below)
if [ "${2:-}" = "--one" ]; then
    t=$3
    name=$(basename "$t" .sh)
    log=$4/$name
    work=$(mktemp -d /tmp/fpd-cli-XXXXXX)
    start=$(date +%s)
    # the script's last act marks its end: a shell error (a syntax error, an unset helper)
    # stops a sourced script where it is, with its later cases neither run nor counted
    (cd "$work" && RESULTS="$log.results" CASE=$name sh -c ". '$ROOT/tests/cli/lib.sh'; . '$t'; : >'$log.end'") \
        >"$log.out" 2>&1 </dev/null
    rm -rf "$work"
    touch "$log.results"
    [ -f "$log.end" ] ||
        echo "not ok $name: the script stopped before its end (a shell error? see its output above)" >>"$log.results"
    echo "== $name: $(grep -c '^ok' "$log.results") passed, $(grep -c '^not ok' "$log.results") failed," \
        "$(grep -c '^skip' "$log.results") skipped ($(($(date +%s) - start)) s)"
    exit 0
fi

jobs=${FPD_CLI_JOBS:-$(nproc 2>/dev/null || echo 1)}
[ "$jobs" -gt 4 ] && jobs=4
[ "$jobs" -lt 1 ] && jobs=1
logs=$(mktemp -d /tmp/fpd-cli-logs-XXXXXX)
list=$logs/list
for t in "$ROOT"/tests/cli/test-*.sh; do
    # shellcheck disable=SC2254
    case $(basename "$t" .sh) in ${FPD_CLI_ONLY:-*}) ;; *) continue ;; esac
    echo "$t" >>"$list"
done
touch "$list"
count=$(wc -l <"$list")
[ "$count" -lt "$jobs" ] && [ "$count" -gt 0 ] && jobs=$count
echo "CLI: $count scripts, $jobs at a time"
# the slowest scripts first (measured: tens of seconds each), so that the last ones to
# start are short and both jobs end together
slow="test-gpu-build test-python test-batch test-free test-train test-suggest"
for name in $slow; do grep "/$name\.sh\$" "$list"; done >"$logs/order"
for t in $(cat "$list"); do
    case " $slow " in *" $(basename "$t" .sh) "*) ;; *) echo "$t" ;; esac
done >>"$logs/order"
xargs -P "$jobs" -I{} sh "$0" "$BUILD" --one {} "$logs" <"$logs/order"
pass=0
fail=0
skip=0
while read -r t; do
    name=$(basename "$t" .sh)
    cat "$logs/$name.out"
    pass=$((pass + $(grep -c '^ok' "$logs/$name.results")))
    fail=$((fail + $(grep -c '^not ok' "$logs/$name.results")))
    skip=$((skip + $(grep -c '^skip' "$logs/$name.results")))
done <"$list"
rm -rf "$logs"
echo "CLI: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
