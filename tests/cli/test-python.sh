# The fpd Python package (tools/python): tests/python/test_fpd.py (the NumPy layer)
# and tests/python/test_fpd_torch.py (fpd.torch), against $BUILD/libfpd.so. Each runs
# with the first interpreter that has what it needs, Debian's /usr/bin/python3 first
# (make deps installs python3-numpy and python3-torch for it), then python3 on PATH;
# FPD_PYTHON names another. A missing numpy or torch is a counted, loud skip.
PYS="${FPD_PYTHON:-} /usr/bin/python3 python3"

find_python() { # MODULES: prints the first interpreter importing them
    for py in $PYS; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -c "import $1" >/dev/null 2>&1; then echo "$py"; return 0; fi
    done
    return 1
}

# run_py LABEL SCRIPT ARGS...: the script's results, reported under LABEL
run_py() {
    label=$1
    shift
    FPD_LIBRARY="$BUILD/libfpd.so" "$PY" "$@" >py.txt 2>py.err
    prc=$?
    cat py.err >>py.txt
    py_results "$label" py.txt "$prc" "$(basename "$1")"
}

if PY=$(find_python numpy); then
    run_py "python ($PY)" "$ROOT/tests/python/test_fpd.py" "$BUILD" "$ROOT" "$DATA"
else
    skip "python: fpd package (NumPy layer) NOT TESTED" "no interpreter with numpy among: $PYS (make deps installs python3-numpy)"
fi

if PY=$(find_python numpy); then
    run_py "free coordinates ($PY)" "$ROOT/tests/python/test_free.py" "$BUILD" "$ROOT"
else
    skip "python: free coordinates NOT TESTED" "no interpreter with numpy among: $PYS"
fi

if PY=$(find_python "numpy, torch"); then
    run_py "torch ($PY)" "$ROOT/tests/python/test_fpd_torch.py" "$BUILD" "$ROOT" "$DATA/movielens-1m/ratings.tsv"
    run_py "torch ($PY)" "$ROOT/tests/python/test_gmf_parity.py" "$BUILD" "$ROOT" "$DATA"
else
    skip "torch: fpd.torch (FPDEmbeddingBag, FPDEmbedding) NOT TESTED" "no interpreter with torch among: $PYS (make deps installs python3-torch)"
    echo "WARNING: PyTorch is not installed for any of: $PYS; the fpd.torch tests were skipped" >&2
fi
