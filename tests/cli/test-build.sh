# The shared library carries its SONAME and version (issue 13).
if command -v readelf >/dev/null 2>&1; then
    readelf -d "$BUILD/libfpd.so" >out.txt 2>err.txt
    v=$(sed -n 's/^#define FPD_VERSION_STRING "\(.*\)"/\1/p' "$ROOT/lib/fpd.h")
    expect_grep "libfpd.so: SONAME libfpd.so.MAJOR" out.txt "Library soname: \[libfpd\.so\.${v%%.*}\]"
else
    skip "libfpd.so SONAME" "readelf not available"
fi
