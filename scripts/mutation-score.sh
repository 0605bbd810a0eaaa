#!/usr/bin/env bash
# Mutation score of one part of mmtk against its own test files (TESTING.md records the
# figures). Runs mutmut (the `dev` extra) in a throw-away copy of the repository, so no
# mutants/ directory ever appears in the working tree.
#
#   bash scripts/mutation-score.sh 'mmtk/metrics.py' tests/test_metrics.py
#   bash scripts/mutation-score.sh 'mmtk/store/*' tests/store
#
# The first argument is the files to mutate (an fnmatch pattern under mmtk/); the rest
# are the test files or folders that must kill the mutants. The copy is the committed
# HEAD (SOURCE=worktree copies the working tree instead, uncommitted files included).
# Prints killed/total and every surviving mutant's diff (DIFFS=0: the names only, which is
# much faster for a large module); JOBS (default 2) sets mutmut's parallel children,
# KEEP=1 keeps the copy (its path is printed) for `mutmut show`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ $# -lt 2 ]; then
  echo "usage: $0 'mmtk/PATTERN' TEST_PATH..." >&2
  exit 2
fi
pattern=$1
shift
repo=$PWD
venv=$repo/.venv/bin
[ -x "$venv/mutmut" ] || { echo "mutmut is not installed: .venv/bin/pip install -e '.[dev]'" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/mmtk-mutation.XXXXXX")
if [ "${KEEP:-0}" != 1 ]; then
  trap 'rm -rf "$work"' EXIT
fi
if [ "${SOURCE:-head}" = worktree ]; then
  git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$work"
else
  git archive HEAD | tar -xf - -C "$work"
fi

{
  echo "[mutmut]"
  echo "source_paths = mmtk"
  echo "only_mutate = $pattern"
  echo "also_copy = tests"
  printf 'pytest_add_cli_args_test_selection =\n'
  for path in "$@"; do printf '    %s\n' "$path"; done
  printf 'pytest_add_cli_args =\n    -p\n    no:cacheprovider\n    -q\n    -x\n'
} > "$work/setup.cfg"

cd "$work"
echo "mutating $pattern against $* in $work (HEAD $(git -C "$repo" rev-parse --short HEAD), source ${SOURCE:-head})" >&2
# mutmut draws a spinner on stdout; only its summary matters here.
"$venv/mutmut" run --max-children "${JOBS:-2}" > mutmut-run.log 2>&1 || { tail -n 30 mutmut-run.log >&2; exit 3; }
"$venv/mutmut" results --all true 2>/dev/null > results.txt
killed=$(grep -c ': killed$' results.txt || true)
total=$(grep -c ': ' results.txt || true)
echo "== $pattern: $killed of $total mutants killed ($(awk -v k="$killed" -v t="$total" 'BEGIN { printf "%.1f", t ? 100 * k / t : 0 }')%)"
awk -F': ' '{print $2}' results.txt | sort | uniq -c
for mutant in $(awk -F': ' '$2 != "killed" {print $1}' results.txt); do
  echo "-- $mutant ($(grep -F "$mutant:" results.txt | awk -F': ' '{print $2}'))"
  if [ "${DIFFS:-1}" != 0 ]; then
    "$venv/mutmut" show "$mutant" 2>/dev/null | grep -E '^[-+][^-+]' || true
  fi
done
[ "${KEEP:-0}" = 1 ] && echo "kept $work" >&2
exit 0
