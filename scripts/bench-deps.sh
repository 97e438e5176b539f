#!/usr/bin/env bash
# Install what the load benchmarks need. Idempotent; instant when everything is present.
#   scripts/bench-deps.sh gate   the `bench` extra of pyproject.toml (Locust, py-spy) into .venv
#   scripts/bench-deps.sh full   that, plus nginx (Debian, as root) and LiteLLM's proxy in its own
#                                virtualenv under ~/.cache/dragonfly-bench (a failed LiteLLM install is
#                                reported and tolerated: the harness then skips that target)
set -euo pipefail
mode=${1:-gate}
VENV_PY=${VENV_PY:-.venv/bin/python}
CACHE=${DRAGONFLY_BENCH_CACHE:-$HOME/.cache/dragonfly-bench}

# The bench extra, read from pyproject.toml (installing `.[bench]` would rebuild the native module).
mapfile -t reqs < <("$VENV_PY" -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['project']['optional-dependencies']['bench']))")
if ! "$VENV_PY" -c "import locust" >/dev/null 2>&1 || [ ! -x "$(dirname "$VENV_PY")/py-spy" ]; then
  "$VENV_PY" -m pip install --quiet "${reqs[@]}"
fi
echo "bench Python dependencies present: ${reqs[*]}"
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
