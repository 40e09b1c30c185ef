# Helpers for the CLI cases (sourced by tests/cli/run.sh). Each check prints
# "ok CASE: NAME" or "not ok CASE: NAME" with what differed.
# Variables: BUILD (tools), ROOT (project), DATA (shared data), RESULTS, CASE.

_report() { # status name [detail]
    echo "$1 $CASE: $2" | tee -a "$RESULTS"
    [ -n "${3:-}" ] && printf '    %s\n' "$3"
    return 0
}

# run CMD...: runs it, keeps exit code in $rc, stdout in out.txt, stderr in err.txt
run() {
    "$@" >out.txt 2>err.txt </dev/null
    rc=$?
}

# expect_rc NAME CODE: the last run exited with CODE
expect_rc() {
    if [ "$rc" -eq "$2" ]; then _report ok "$1"; else _report "not ok" "$1" "exit $rc, expected $2; stderr: $(head -c 400 err.txt)"; fi
}

# expect_file NAME FILE PATTERN: FILE has a line matching the extended regex PATTERN
expect_grep() {
    if grep -Eq -- "$3" "$2"; then _report ok "$1"; else _report "not ok" "$1" "no /$3/ in $2: $(head -c 400 "$2")"; fi
}

expect_no_grep() {
    if grep -Eq -- "$3" "$2"; then _report "not ok" "$1" "unexpected /$3/ in $2"; else _report ok "$1"; fi
}

# expect_lines NAME FILE N: FILE has exactly N lines
expect_lines() {
    n=$(wc -l <"$2")
    if [ "$n" -eq "$3" ]; then _report ok "$1"; else _report "not ok" "$1" "$2 has $n lines, expected $3: $(head -c 400 "$2")"; fi
}

expect_exists() {
    if [ -e "$2" ]; then _report ok "$1"; else _report "not ok" "$1" "$2 does not exist"; fi
}

expect_absent() {
    if [ -e "$2" ]; then _report "not ok" "$1" "$2 exists"; else _report ok "$1"; fi
}

# expect_no_temp NAME DIR: no leftover temporary files (.NAME.tmp-*) in DIR
expect_no_temp() {
    if ls -a "$2" | grep -q '\.tmp-'; then _report "not ok" "$1" "temporary files left: $(ls -a "$2" | grep '\.tmp-')"; else _report ok "$1"; fi
}

skip() { _report skip "$1" "$2"; }

have_python_numpy() { python3 -c 'import numpy' >/dev/null 2>&1; }

# py_plain NAME CODE: a Python check that needs no numpy (skipped without python3)
py_plain() {
    name=$1
    shift
    if ! command -v python3 >/dev/null 2>&1; then skip "$name" "python3 not available"; return 0; fi
    if python3 -c "$@" >py.txt 2>&1; then _report ok "$name"; else _report "not ok" "$name" "$(tail -c 600 py.txt)"; fi
}

# py_check NAME CODE: run a Python check (exit 0 = pass); skipped without python3+numpy,
# and when CODE uses the outside reference ($CHECK) but it is not there.
py_check() {
    name=$1
    shift
    if ! have_python_numpy; then skip "$name" "python3 with numpy not available"; return 0; fi
    case "$1" in *fpd_check*)
        if [ ! -f "${CHECK:-}" ]; then skip "$name" "outside reference ${CHECK:-fpd_check.py} not found"; return 0; fi;;
    esac
    if python3 -c "$@" >py.txt 2>&1; then _report ok "$name"; else _report "not ok" "$name" "$(tail -c 600 py.txt)"; fi
}

# py_results LABEL FILE RC SCRIPT: one report per "ok NAME" / "not ok NAME: why" /
# "skip NAME: why" line of a Python test's output FILE, prefixed with LABEL; a script
# that exited RC != 0 without a "not ok" line is a failure of its own.
py_results() {
    while IFS= read -r line; do
        case "$line" in
        "ok "*) _report ok "$1: ${line#ok }" ;;
        "not ok "*) _report "not ok" "$1: ${line#not ok }" ;;
        "skip "*) _report skip "$1: ${line#skip }" ;;
        esac
    done <"$2"
    if [ "$3" -ne 0 ] && ! grep -q '^not ok' "$2"; then _report "not ok" "$1: $4 ran" "exit $3: $(tail -c 600 "$2")"; fi
}
