# The shared library carries its SONAME and version (issue 13).
if command -v readelf >/dev/null 2>&1; then
    readelf -d "$BUILD/libfpd.so" >out.txt 2>err.txt
    v=$(sed -n 's/^#define FPD_VERSION_STRING "\(.*\)"/\1/p' "$ROOT/lib/fpd.h")
    expect_grep "libfpd.so: SONAME libfpd.so.MAJOR" out.txt "Library soname: \[libfpd\.so\.${v%%.*}\]"
else
    skip "libfpd.so SONAME" "readelf not available"
fi

# libfpd and the tools never link CUDA: the CUDA backend is its own object,
# build/libfpd-cuda.so, opened with dlopen when CUDA is asked for (issue 10).
if command -v readelf >/dev/null 2>&1; then
    for f in "$BUILD/libfpd.so" "$BUILD"/fpd-* "$BUILD"/sample-*; do
        [ -f "$f" ] || continue
        readelf -d "$f" >out.txt 2>err.txt
        expect_no_grep "$(basename "$f"): links no CUDA library" out.txt "NEEDED.*(libcuda|libcublas|libcusolver)"
    done
    if [ -f "$BUILD/libfpd-cuda.so" ]; then
        readelf -d "$BUILD/libfpd-cuda.so" >out.txt 2>err.txt
        expect_grep "libfpd-cuda.so: links the CUDA runtime" out.txt "NEEDED.*libcudart"
        readelf --dyn-syms -W "$BUILD/libfpd-cuda.so" | awk '$5 == "GLOBAL" && $7 != "UND" {print $8}' >syms.txt
        if [ "$(cat syms.txt)" = "fpd_backend_plugin_init" ]; then _report ok "libfpd-cuda.so: exports the entry point only"
        else _report "not ok" "libfpd-cuda.so: exports the entry point only" "$(head -c 300 syms.txt)"; fi
    else
        skip "libfpd-cuda.so" "not built (CUDA=0)"
    fi
else
    skip "CUDA linkage" "readelf not available"
fi

# The READMEs render: every code fence closes on a line of its own (a closing fence with
# text after it does not close, and the rest of the file turns into code), and every
# local link and image names a file that exists.
for md in README.md samples/accuracy/README.md; do
    py_plain "$md: code fences open and close on lines of their own" "
import re, sys
inside = False
for i, l in enumerate(open('$ROOT/$md', encoding='utf-8').read().split('\n'), 1):
    s = l.lstrip()
    if not s.startswith('\`\`\`'): continue
    if inside and s.strip() != '\`\`\`': sys.exit('line %d: text after a closing fence: %s' % (i, l[:60]))
    if not inside and not re.match(r'^\`\`\`[A-Za-z0-9_+-]*$', s.strip()): sys.exit('line %d: bad opening fence' % i)
    inside = not inside
if inside: sys.exit('a code fence is never closed')"
    py_plain "$md: local links and images name files that exist" "
import os, re, sys
md = '$ROOT/$md'
text = open(md, encoding='utf-8').read()
bad = [t for t in re.findall(r'\]\(([^)#][^)]*)\)', text)
       if '://' not in t and not os.path.exists(os.path.join(os.path.dirname(md), t.split('#')[0]))]
if bad: sys.exit('missing: %s' % bad)"
done
