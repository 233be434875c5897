#!/usr/bin/env bash
# `d2lora completion bash` (client/completion.cc): the script parses, offers
# exactly the subcommands `d2lora --help` lists and, after each subcommand,
# exactly the flags its --help lists; file names after a flag that takes a
# value and for positionals. Then `cmake --install` puts the binary and the
# same script in place.
#
#   cli_completion_test.sh D2LORA BUILD_DIR
set -uo pipefail
D2="$1" BUILD="$2"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
source "$ROOT/tests/lib.sh"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1

"$D2" completion bash >d2lora.bash 2>err.txt && bash -n d2lora.bash && pass "completion bash: a script that parses" ||
  fail "completion bash: $(cat err.txt)"
expect 2 "zsh not in" -- "$D2" completion zsh

# complete WORD...: what the script offers for the command line "d2lora WORD..." (the last word is the one completed).
complete_line() {
  bash -c 'source ./d2lora.bash; COMP_WORDS=(d2lora "$@"); COMP_CWORD=$#; _d2lora; printf "%s\n" "${COMPREPLY[@]}"' _ "$@" | sort
}
# The subcommands --help lists, and the long flags of one subcommand's --help.
"$D2" --help | awk '/^Subcommands:/ {on = 1; next} on && /^  [a-z]/ {print $1}' | sort >subcommands.txt
complete_line "" | grep -v '^-' >offered.txt
if [ -s subcommands.txt ] && cmp -s subcommands.txt offered.txt; then
  pass "offers the $(wc -l <subcommands.txt) subcommands of --help"
else
  fail "subcommands differ from --help: $(diff subcommands.txt offered.txt | tr '\n' ' ')"
fi
bad=0
while read -r sub; do
  "$D2" "$sub" --help | grep -oE '^ +(-[a-zA-Z],)?--[a-z0-9-]+' | grep -oE -- '--[a-z0-9-]+' | sort -u >want.txt
  complete_line "$sub" "--" >got.txt
  cmp -s want.txt got.txt || { bad=$((bad + 1)); echo "  $sub: $(diff want.txt got.txt | tr '\n' ' ')"; }
done <subcommands.txt
[ -s subcommands.txt ] && ((bad == 0)) && pass "after each subcommand, exactly its --help's long flags" || fail "$bad subcommands' flags differ"

touch model-a model-b other
[ "$(complete_line eval --model model- | tr '\n' ' ')" == "model-a model-b " ] &&
  pass "a flag's value completes file names" || fail "eval --model model-: $(complete_line eval --model model-)"
[ "$(complete_line eval --json --mo | tr '\n' ' ')" == "--model " ] &&
  pass "after a flag without a value, flags again" || fail "eval --json --mo: $(complete_line eval --json --mo)"
[ "$(complete_line submit oth | tr '\n' ' ')" == "other " ] &&
  pass "a positional completes file names" || fail "submit oth: $(complete_line submit oth)"

# cmake --install: the binaries and the completion the build made.
if cmake --install "$BUILD" --prefix "$T/prefix" >install.log 2>&1; then
  installed="$T/prefix/share/bash-completion/completions/d2lora"
  [ -x "$T/prefix/bin/d2lora" ] && cmp -s "$installed" d2lora.bash &&
    pass "cmake --install: bin/d2lora and share/bash-completion/completions/d2lora (the same script)" ||
    fail "cmake --install: $(find "$T/prefix" -type f | head)"
else
  fail "cmake --install: $(tail -5 install.log)"
fi

echo "failures: $failures"
[ "$failures" -eq 0 ]
