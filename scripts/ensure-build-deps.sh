#!/usr/bin/env bash
# What building the native extension needs beyond Python and Rust: the system SQLite library to link
# against (libsqlite3-dev). The native batch writer (rust_core/io) must use the very libsqlite3 that
# Python's sqlite3 module loads, never a copy of its own (two copies in one process keep two tables of
# POSIX locks on the same file). As root a missing package is installed with apt; otherwise prints what
# to install and fails. Idempotent, and instant when the library links.
set -euo pipefail

links() {
  local out
  out=$(mktemp)
  if printf 'int main(void){return 0;}\n' | cc -x c - -lsqlite3 -o "$out" >/dev/null 2>&1; then
    rm -f "$out"
    return 0
  fi
  rm -f "$out"
  return 1
}

command -v cc >/dev/null 2>&1 || { echo "ensure-build-deps: no C compiler (cc); install gcc" >&2; exit 1; }
links && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-build-deps: the SQLite development library is missing" >&2
  echo "install it with:  sudo apt-get update && sudo apt-get install -y libsqlite3-dev" >&2
  exit 1
fi
echo "ensure-build-deps: installing libsqlite3-dev"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends libsqlite3-dev
links || { echo "ensure-build-deps: libsqlite3 still does not link" >&2; exit 1; }
