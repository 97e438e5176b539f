#!/usr/bin/env bash
# Dependency drift check: would the suite still pass with other versions than the lock's?
#   scripts/deps-check.sh newest   every dependency at the newest version pyproject.toml allows
#   scripts/deps-check.sh lowest   every direct dependency at its lower bound (are the ranges honest?)
# Resolves fresh (the lock file is not touched), installs into a scratch virtualenv, builds the native
# extension into it, runs the whole pytest suite, and reports which pins differ from the lock.
# Exit status: the suite's (0 = the lock can move to these versions with `make lock-upgrade`).
# Run by `make deps-check [MODE=lowest]`; the Makefile provides .tools/bin/uv.
set -euo pipefail
mode=${1:-newest}
case "$mode" in
  newest) resolution=highest ;;
  lowest) resolution=lowest-direct ;;
  *) echo "usage: $0 newest|lowest" >&2; exit 2 ;;
esac
cd "$(dirname "${BASH_SOURCE[0]}")/.."
UV=${UV:-.tools/bin/uv}
PYTHON=${PYTHON:-python3.11}
LOCK=requirements.lock.txt
scratch=$(mktemp -d "${TMPDIR:-/tmp}/dragonfly-deps-$mode.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

printf '\n==> resolve (%s) into %s\n' "$mode" "$scratch"
"$UV" pip compile pyproject.toml --all-extras --group pyproject.toml:build --python-version 3.11 \
  --resolution "$resolution" --upgrade --quiet -o "$scratch/requirements.txt"

# What moved, as "name: locked -> resolved" (names normalised the way the lock writes them).
pins() {
  sed -nE 's/^([A-Za-z0-9._-]+)==([^ ;\\]+).*/\1 \2/p' "$1" \
    | awk '{ name = tolower($1); gsub(/[_.]/, "-", name); print name, $2 }' | sort -u
}
join -a1 -a2 -e '(none)' -o 0,1.2,2.2 <(pins "$LOCK") <(pins "$scratch/requirements.txt") \
  | awk '$2 != $3 { printf "  %-28s %s -> %s\n", $1, $2, $3; n++ } END { if (!n) print "  (no version differs from the lock)" }' \
  >"$scratch/drift.txt"
printf '\n==> versions that differ from %s\n' "$LOCK"
cat "$scratch/drift.txt"

printf '\n==> install into a scratch virtualenv and build the extension\n'
"$UV" venv --quiet --python "$PYTHON" "$scratch/venv"
"$UV" pip sync --quiet --python "$scratch/venv/bin/python" "$scratch/requirements.txt"
# The extension is abi3 and built in place (python/dragonfly/_native.abi3.so): the same file serves .venv.
VIRTUAL_ENV="$scratch/venv" PATH="$scratch/venv/bin:$(dirname "$UV"):$PATH" \
  "$scratch/venv/bin/maturin" develop --release --uv --quiet

printf '\n==> pytest with the %s versions\n' "$mode"
set +e
"$scratch/venv/bin/python" -m pytest -q --timeout="${PYTEST_TIMEOUT:-180}" -p no:cacheprovider
rc=$?
set -e
printf '\n==> deps-check %s: %s\n' "$mode" "$([ "$rc" -eq 0 ] && echo PASSED || echo "FAILED (pytest exit $rc)")"
cat "$scratch/drift.txt"
exit "$rc"
