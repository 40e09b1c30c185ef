# fpd-batch pipeline files (issue 14, item 3): YAML read event by event with limits,
# refused quickly and with the place: nesting deeper than 64 (flow nesting of depth
# 100,000 used to take minutes in libyaml's document loader), more than 100,000 nodes
# counting aliases as what they repeat ("billion laughs"), tags such as !!binary (they
# were ignored), an alias inside its own node, an undefined alias, a second document;
# --check catches an output or report folder the run could not write into, as the
# run does, before any work. Anchors and aliases themselves still work.
B="$BUILD/fpd-batch"
cp "$ROOT/samples/glove-10k.safetensors" a.safetensors
mkdir -p y

# limited CASE EXIT PATTERN: `fpd-batch y/p.yaml --check` within 20 s, one error line
limited() {
    run timeout 20 "$B" y/p.yaml --check
    expect_rc "$1: exit $2" "$2"
    expect_lines "$1: one line" err.txt 1
    expect_grep "$1: says where and what" err.txt "$3"
    expect_absent "$1: no work" y/out
}
OUT='output:\n  folder: out\n'

{ printf 'inputs: '; head -c 100000 /dev/zero | tr '\0' '['; head -c 100000 /dev/zero | tr '\0' ']'; printf "\n$OUT"; } >y/p.yaml
limited "flow nesting 100,000 deep" 2 "^fpd-batch: error: y/p.yaml:1:72: lists and mappings nested more than 64 deep"

{ printf "inputs: [../a.safetensors]\n${OUT}defaults:\n"; i=1; ind='  '
  while [ $i -le 70 ]; do printf '%sk%d:\n' "$ind" $i; ind="$ind  "; i=$((i + 1)); done; } >y/p.yaml
limited "block nesting 70 deep" 2 "^fpd-batch: error: y/p.yaml:[0-9]+:[0-9]+: lists and mappings nested more than 64 deep"

{ printf 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n'
  for l in b c d e f g h i; do p=$(printf '%s' "$l" | tr 'b-i' 'a-h'); printf '%s: &%s [*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s]\n' $l $l $p $p $p $p $p $p $p $p $p $p; done
  printf "inputs: [../a.safetensors]\n$OUT"; } >y/p.yaml
limited "billion laughs" 2 "^fpd-batch: error: y/p.yaml:5:[0-9]+: more than 100000 YAML nodes \(an alias counts as the nodes it repeats\)"

printf 'inputs: [../a.safetensors]\noutput:\n  folder: !!binary b3V0\n' >y/p.yaml
limited "!!binary tag" 2 "^fpd-batch: error: y/p.yaml:3:11: YAML tag '!!binary' is not supported"
printf 'inputs: [../a.safetensors]\noutput:\n  folder: out\ndefaults:\n  rank: !!str 4\n' >y/p.yaml
limited "!!str tag" 2 "^fpd-batch: error: y/p.yaml:5:9: YAML tag '!!str' is not supported"
printf "inputs: !local [../a.safetensors]\n$OUT" >y/p.yaml
limited "local tag" 2 "^fpd-batch: error: y/p.yaml:1:9: YAML tag '!local' is not supported"
printf "inputs: &x [../a.safetensors, *x]\n$OUT" >y/p.yaml
limited "alias cycle" 2 "^fpd-batch: error: y/p.yaml:1:31: alias '\*x' is inside the node it names \(a cycle\)"
printf "inputs: [*nope]\n$OUT" >y/p.yaml
limited "undefined alias" 2 "^fpd-batch: error: y/p.yaml:1:10: alias '\*nope' names no anchor defined before it"
printf "inputs: [../a.safetensors]\n$OUT---\ninputs: []\n" >y/p.yaml
limited "second document" 2 "^fpd-batch: error: y/p.yaml:4:1: a second YAML document"

# anchors and aliases as such are fine
printf 'inputs: &in [../a.safetensors]\noutput:\n  folder: out\nselect:\n  include: &inc ["*"]\n  exclude: []\ntables:\n  - match: &m "word*"\n    rank: 4\n  - match: *m\n    terms: 1\n' >y/p.yaml
run "$B" y/p.yaml --check
expect_rc "aliases: valid" 0
expect_grep "aliases: the plan" out.txt "valid: 1 checkpoint\(s\), 1 table\(s\) selected"

# --check catches an output folder the run cannot write into
touch y/afile
printf 'inputs: [../a.safetensors]\noutput:\n  folder: afile\n' >y/p.yaml
limited "output folder is a file" 2 "^fpd-batch: error: y/p.yaml:3:11: output.folder '.*y/afile' cannot hold the outputs: '.*y/afile' is not a folder"
printf 'inputs: [../a.safetensors]\noutput:\n  folder: afile/sub/out\n' >y/p.yaml
limited "output folder below a file" 2 "^fpd-batch: error: y/p.yaml:3:11: output.folder '.*afile/sub/out' cannot hold the outputs: '.*y/afile' is not a folder"
printf 'inputs: [../a.safetensors]\noutput:\n  folder: out\nreport:\n  json: afile/r.json\n' >y/p.yaml
limited "report folder is a file" 2 "^fpd-batch: error: y/p.yaml:5:9: report.json '.*afile/r.json' cannot be written: '.*y/afile' is not a folder"
# ... and the run itself refuses the same way, before any work
run "$B" y/p.yaml
expect_rc "run with a bad report folder: exit 2" 2
expect_absent "run with a bad report folder: no work" y/out
if [ "$(id -u)" != 0 ]; then
    mkdir -p y/ro && chmod 555 y/ro
    printf 'inputs: [../a.safetensors]\noutput:\n  folder: ro/out\n' >y/p.yaml
    limited "output folder not writable" 2 "^fpd-batch: error: y/p.yaml:3:11: output.folder .* '.*y/ro' is not writable"
    chmod 755 y/ro
else
    skip "output folder not writable" "running as root: every folder is writable"
fi
# a folder to be made under a writable one is fine
printf 'inputs: [../a.safetensors]\noutput:\n  folder: new/deeper/out\n' >y/p.yaml
run "$B" y/p.yaml --check
expect_rc "output folder to be created: valid" 0
expect_absent "output folder to be created: --check creates nothing" y/new

# fuzz-yaml regression (tests/fuzz/regressions/fuzz-yaml/): a pattern that matches only
# folders ("..*" matches "..") was accepted and gave a pipeline of 0 checkpoints
mkdir -p fz/sub && cp "$ROOT/tests/fuzz/regressions/fuzz-yaml/pattern-matching-only-folders.yaml" fz/p.yaml
run "$B" fz/p.yaml --check
expect_rc "pattern matching only folders: exit 2" 2
expect_grep "pattern matching only folders: says so" err.txt \
    "^fpd-batch: error: fz/p.yaml:3:5: input pattern '\.\.\*' matches no file, only folders \(such as '.*\.\.'\)"
printf 'inputs:\n  - "s*"\noutput:\n  folder: out\n' >fz/q.yaml
run "$B" fz/q.yaml --check
expect_rc "pattern matching a folder: exit 2" 2
expect_grep "pattern matching a folder: names it" err.txt "input pattern 's\*' matches no file, only folders \(such as '.*fz/sub'\)"
# fuzz-yaml regression: a report in the root folder ("/../bu26 ...") made the folder
# check write past a buffer (seen under ASan: make SANITIZE=address,undefined, or make fuzz)
cp "$ROOT/tests/fuzz/regressions/fuzz-yaml/report-in-root-folder.yaml" fz/r.yaml
cp "$ROOT/tests/fuzz/corpus/fuzz-npy/f4-2x3.npy" fz/a.npy
run "$B" fz/r.yaml --check
if [ "$(id -u)" = 0 ]; then
    expect_rc "report in the root folder: valid" 0
else
    expect_rc "report in the root folder: refused" 2
    expect_grep "report in the root folder: says why" err.txt "report.json '/bu26 .*' cannot be written: '/' is not writable"
fi
