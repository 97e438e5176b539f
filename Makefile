# Dragonfly: two commands matter.
#   make run   - set up .venv (once, or when build inputs change) and start `dragonfly serve --demo`
#   make test  - set up, then lint, the Rust tests, the Python test suite and the latency gate (fails fast)
# Also real: `make build` (venv + native extension), `make lint`, `make system-deps`,
#   `make lock` / `make lock-upgrade` (requirements.lock.txt), `make deps-check` (newest allowed versions).
#
# Python dependencies come only from requirements.lock.txt (exact versions, sha256 hashes), installed by
# uv, which is itself pinned by hash in scripts/uv-requirements.txt and kept in .tools/.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test
MAKEFLAGS += --no-print-directory

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
VENV_PY := $(BIN)/python
MATURIN := $(BIN)/maturin
NATIVE_SO := python/dragonfly/_native.abi3.so
INSTALL_STAMP := $(VENV)/.dragonfly-install.stamp
LOCK := requirements.lock.txt
SYNC_STAMP := $(VENV)/.dragonfly-sync.stamp
TOOLS := .tools
UV := $(TOOLS)/bin/uv
# One universal resolution of every dependency set: runtime, the test and bench extras, the build group.
LOCK_ARGS := pyproject.toml --all-extras --group pyproject.toml:build --universal --python-version 3.11 \
	--generate-hashes --quiet -o $(LOCK)
PYTEST_TIMEOUT ?= 180
# pytest-xdist workers (`auto`: one per core); a whole file goes to one worker (its module fixtures
# start once). PYTEST_WORKERS=0 runs the suite in this process.
PYTEST_WORKERS ?= auto
ARGS ?=

# rustup installs cargo under ~/.cargo/bin, which a non-login CI shell may not have on PATH.
export PATH := $(abspath $(BIN)):$(abspath $(TOOLS)/bin):$(HOME)/.cargo/bin:$(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))
export PYO3_PYTHON := $(abspath $(VENV_PY))

# Everything the installed package depends on besides the pure-Python sources (installed editable).
BUILD_INPUTS := pyproject.toml Cargo.toml $(wildcard Cargo.lock) \
	$(shell find rust_core -type f -not -path '*/target/*' 2>/dev/null)

STEP := scripts/step.sh

.PHONY: run test build lint rust-test pytest system-deps bench bench-gate lock lock-upgrade deps-check docs-check

run: build
	$(BIN)/dragonfly serve --demo $(ARGS)

test: system-deps build lint rust-test pytest bench-gate
	@printf '\n==> all checks passed\n'

build: $(INSTALL_STAMP)

system-deps:
	@$(STEP) "system dependencies" scripts/ensure-system-deps.sh

$(UV): scripts/uv-requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; install Python 3.11" >&2; exit 1; }
	@$(STEP) "bootstrap uv (pinned by hash)" bash -c '$(PYTHON) -m venv $(TOOLS) && \
		$(TOOLS)/bin/pip install --quiet --require-hashes -r scripts/uv-requirements.txt'
	@touch $@

# The virtualenv holds exactly what the lock says (uv pip sync removes anything else, hashes checked).
$(SYNC_STAMP): $(LOCK) | $(UV)
	@test -x $(VENV_PY) || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	@$(STEP) "install the locked Python dependencies ($(LOCK))" \
		$(UV) pip sync --quiet --require-hashes --python $(VENV_PY) $(LOCK)
	@touch $@

# Rebuild when an input is newer than the stamp, or when the compiled extension is missing. The
# dependencies are already there (from the lock): maturin only builds and installs dragonfly itself.
$(INSTALL_STAMP): $(BUILD_INPUTS) $(SYNC_STAMP) $(if $(wildcard $(NATIVE_SO)),,FORCE)
	@$(STEP) "build dependencies (the system libsqlite3 to link)" scripts/ensure-build-deps.sh
	@$(STEP) "build and install (maturin develop --release)" \
		$(MATURIN) develop --release --uv
	@touch $@

# Re-resolve the lock after a change to pyproject.toml, keeping every pin that still fits.
lock: | $(UV)
	$(UV) pip compile $(LOCK_ARGS)

# Move every pin to the newest version pyproject.toml allows; review the diff, then `make test`.
lock-upgrade: | $(UV)
	$(UV) pip compile --upgrade $(LOCK_ARGS)

# Drift check: the newest allowed versions (MODE=newest) or the lowest direct ones (MODE=lowest) in a
# scratch virtualenv, with the whole suite; reports what differs from the lock. The lock is untouched.
MODE ?= newest
deps-check: | $(UV)
	@scripts/deps-check.sh $(MODE)

# Dead relative links in README.md, ARCHITECTURE.md, docs/ and benchmarks/ (also part of pytest).
docs-check: build
	$(VENV_PY) -m pytest -q tests/unit/test_docs_links.py

.PHONY: FORCE
FORCE:

lint: build
	@$(STEP) "ruff check" $(BIN)/ruff check
	@$(STEP) "ruff format --check" $(BIN)/ruff format --check
	@$(STEP) "mypy" $(BIN)/mypy
	@$(STEP) "cargo fmt --check" cargo fmt --all --check
	@$(STEP) "cargo clippy" cargo clippy --all-features -- -D warnings
	@$(STEP) "stubtest dragonfly._native" $(VENV_PY) -m mypy.stubtest dragonfly._native

rust-test:
	@$(STEP) "cargo test" cargo test -p dragonfly-core -p dragonfly-io

pytest: build
	@$(STEP) "pytest" $(VENV_PY) -m pytest -q --timeout=$(PYTEST_TIMEOUT) \
		-n $(PYTEST_WORKERS) --dist loadfile

# Load benchmarks (benchmarks/README.md, section Load). `make bench ARGS="--targets direct,embedded"`.
bench: build
	@$(STEP) "bench dependencies" scripts/bench-deps.sh full
	$(VENV_PY) -m benchmarks.load run $(ARGS)

# Latency gate (~40 s): Dragonfly embedded vs the fake seller directly, same run; exit 1 on regression.
bench-gate: build
	@$(STEP) "bench dependencies" scripts/bench-deps.sh gate
	@$(STEP) "bench-gate" $(VENV_PY) -m benchmarks.load gate
