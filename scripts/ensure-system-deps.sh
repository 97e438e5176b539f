#!/usr/bin/env bash
# Make sure the system programs the test suite needs exist: redis-server, the PostgreSQL server
# binaries (initdb, pg_ctl, postgres, psql, pg_isready), nginx (`nginx -t` on deploy/nginx.conf, and
# the load balancer tests/e2e/test_deploy_topology.py runs itself) and chromium (the headless browser
# that Playwright drives in tests/e2e/test_dashboard.py; Playwright never downloads one). As root,
# missing ones are installed with apt (binaries only: no Debian cluster is created or started);
# otherwise prints what to install and fails.
# Idempotent, and instant when everything is present.
set -euo pipefail

have_pg_bin() {
  local name=$1 dir
  command -v "$name" >/dev/null 2>&1 && return 0
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/$name" ] && return 0
  done
  return 1
}

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# /usr/sbin is not on every non-root PATH.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
for bin in initdb pg_ctl postgres psql pg_isready; do
  if ! have_pg_bin "$bin"; then
    missing+=(postgresql)
    break
  fi
done
command -v cargo >/dev/null 2>&1 || { echo "ensure-system-deps: cargo not found; install Rust (https://rustup.rs)" >&2; exit 1; }

if [ ${#missing[@]} -eq 0 ]; then
  echo "system dependencies present (redis-server, PostgreSQL binaries, nginx, chromium, cargo)"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-system-deps: missing system packages: ${missing[*]}" >&2
  echo "install them with:  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Tests run their own throwaway PostgreSQL cluster: stop the package from creating the Debian one.
if [[ " ${missing[*]} " == *" postgresql "* ]]; then
  mkdir -p /etc/postgresql-common
  conf=/etc/postgresql-common/createcluster.conf
  if ! grep -qs '^create_main_cluster' "$conf"; then
    echo 'create_main_cluster = false' >>"$conf"
  fi
fi
echo "ensure-system-deps: installing ${missing[*]}"
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
