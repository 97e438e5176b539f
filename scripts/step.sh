#!/usr/bin/env bash
# Usage: scripts/step.sh "label" command [args...]
# Runs one build/check step, announcing it and how long it took (CI's budget is read from these lines),
# and names it loudly if it fails.
set -uo pipefail
label=$1
shift
printf '\n==> %s\n' "$label"
start=$SECONDS
"$@"
rc=$?
printf '<== %s: %d s\n' "$label" "$((SECONDS - start))"
if [ "$rc" -ne 0 ]; then
  printf '\n*** FAILED step: %s (exit %d)\n' "$label" "$rc" >&2
fi
exit "$rc"
