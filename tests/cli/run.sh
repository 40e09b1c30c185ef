#!/bin/sh
# CLI tests: runs every tests/cli/test-*.sh case with the helpers of tests/cli/lib.sh,
# each in a fresh temporary folder. Usage: sh tests/cli/run.sh BUILD_DIR
# Prints one line per check and a closing "N passed, N failed" line; exits 1 on failure.
# FPD_CLI_ONLY=PATTERN runs only the scripts whose name (test-NAME) matches the shell
# pattern, e.g. FPD_CLI_ONLY=test-python sh tests/cli/run.sh build.
set -u
BUILD=$(cd "${1:-build}" && pwd)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA=${FPD_DATA_DIR:-$ROOT/../shared/data}
CHECK=${FPD_CHECK:-$(dirname "$DATA")/tools/fpd_check.py}
export BUILD ROOT DATA CHECK
results=$(mktemp)
for t in "$ROOT"/tests/cli/test-*.sh; do
    # shellcheck disable=SC2254
    case $(basename "$t" .sh) in ${FPD_CLI_ONLY:-*}) ;; *) continue ;; esac
    work=$(mktemp -d /tmp/fpd-cli-XXXXXX)
    (cd "$work" && RESULTS="$results" CASE=$(basename "$t" .sh) sh -c ". '$ROOT/tests/cli/lib.sh'; . '$t'")
    rm -rf "$work"
done
pass=$(grep -c '^ok' "$results")
fail=$(grep -c '^not ok' "$results")
skip=$(grep -c '^skip' "$results")
rm -f "$results"
echo "CLI: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
