#!/usr/bin/env bash
# Install what the load benchmarks need. Idempotent; instant when everything is present.
#   scripts/bench-deps.sh gate   checks the `bench` extra (Locust, py-spy, matplotlib) is in .venv; it comes
#                                from requirements.lock.txt with everything else (`make build`)
#   scripts/bench-deps.sh full   that, plus nginx (Debian, as root) and LiteLLM's proxy in its own
#                                virtualenv under ~/.cache/dragonfly-bench (a failed LiteLLM install is
#                                reported and tolerated: the harness then skips that target)
set -euo pipefail
mode=${1:-gate}
VENV_PY=${VENV_PY:-.venv/bin/python}
CACHE=${DRAGONFLY_BENCH_CACHE:-$HOME/.cache/dragonfly-bench}

if ! "$VENV_PY" -c "import locust, matplotlib" >/dev/null 2>&1 || [ ! -x "$(dirname "$VENV_PY")/py-spy" ]; then
  echo "bench-deps: the bench extra is missing from $(dirname "$(dirname "$VENV_PY")"); run 'make build'" >&2
  exit 1
fi
echo "bench Python dependencies present (locust, py-spy, matplotlib; from requirements.lock.txt)"
[ "$mode" = "full" ] || exit 0

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get install -y nginx-light >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y nginx-light >/dev/null; }
  else
    echo "bench-deps: nginx missing; install it (apt-get install nginx-light) or the harness skips it" >&2
  fi
fi

if [ ! -x "$CACHE/litellm-venv/bin/litellm" ]; then
  mkdir -p "$CACHE"
  PY=${PYTHON:-python3.11}
  if "$PY" -m venv "$CACHE/litellm-venv" && "$CACHE/litellm-venv/bin/pip" install --quiet 'litellm[proxy]'; then
    echo "LiteLLM installed in $CACHE/litellm-venv"
  else
    echo "bench-deps: LiteLLM install failed; the harness will skip the litellm target" >&2
    rm -rf "$CACHE/litellm-venv"
  fi
fi
echo "bench system dependencies checked (nginx, LiteLLM venv)"
