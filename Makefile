# Dragonfly: two commands matter.
#   make run   - set up .venv (once, or when build inputs change) and start `dragonfly serve --demo`
#   make test  - set up, then lint, the Rust tests, the Python test suite and the latency gate (fails fast)
# Also real: `make build` (venv + native extension), `make lint`, `make system-deps`.

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
PYTEST_TIMEOUT ?= 180
ARGS ?=

# rustup installs cargo under ~/.cargo/bin, which a non-login CI shell may not have on PATH.
export PATH := $(abspath $(BIN)):$(HOME)/.cargo/bin:$(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))
export PYO3_PYTHON := $(abspath $(VENV_PY))

# Everything the installed package depends on besides the pure-Python sources (installed editable).
BUILD_INPUTS := pyproject.toml Cargo.toml $(wildcard Cargo.lock) \
	$(shell find rust_core -type f -not -path '*/target/*' 2>/dev/null)

STEP := scripts/step.sh

.PHONY: run test build lint rust-test pytest system-deps bench bench-gate

run: build
	$(BIN)/dragonfly serve --demo $(ARGS)

test: system-deps build lint rust-test pytest bench-gate
	@printf '\n==> all checks passed\n'

build: $(INSTALL_STAMP)

system-deps:
	@$(STEP) "system dependencies" scripts/ensure-system-deps.sh

$(VENV_PY):
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; install Python 3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(MATURIN): | $(VENV_PY)
	$(VENV_PY) -m pip install --quiet --upgrade pip 'maturin>=1.7,<2'

# Rebuild when an input is newer than the stamp, or when the compiled extension is missing.
$(INSTALL_STAMP): $(BUILD_INPUTS) $(if $(wildcard $(NATIVE_SO)),,FORCE) | $(MATURIN)
	@$(STEP) "build and install (maturin develop --release -E test)" \
		$(MATURIN) develop --release -E test
	@touch $@

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
	@$(STEP) "cargo test" cargo test -p dragonfly-core

pytest: build
	@$(STEP) "pytest" $(VENV_PY) -m pytest -q --timeout=$(PYTEST_TIMEOUT)

# Load benchmarks (benchmarks/README.md, section Load). `make bench ARGS="--targets direct,embedded"`.
bench: build
	@$(STEP) "bench dependencies" scripts/bench-deps.sh full
	$(VENV_PY) -m benchmarks.load run $(ARGS)

# Latency gate (~40 s): Dragonfly embedded vs the fake seller directly, same run; exit 1 on regression.
bench-gate: build
	@$(STEP) "bench dependencies" scripts/bench-deps.sh gate
	@$(STEP) "bench-gate" $(VENV_PY) -m benchmarks.load gate
