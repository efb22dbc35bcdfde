# Set-up is two commands: `make run` and `make test`. Everything lives in .venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.build-stamp
SOURCES := $(shell find src python -type f \( -name '*.rs' -o -name '*.py' -o -name '*.pyi' \) 2>/dev/null) Cargo.toml pyproject.toml

.PHONY: run test bench lint fmt build dev-deps rust-test py-test wheel-check clean

# Every dependency list is pyproject.toml's (build-system, dependencies, extras), read by
# .ci/requirements.py; none is repeated here.
REQS := $(PY) .ci/requirements.py

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(REQS) build runtime plot > $(VENV)/requirements-base.txt
	$(PIP) install -q -r $(VENV)/requirements-base.txt

# Release build of the extension, installed into .venv (rebuilt when sources change).
$(STAMP): $(VENV)/bin/python $(SOURCES)
	$(VENV)/bin/maturin develop --release -q
	@touch $(STAMP)

build: $(STAMP)

run: build
	$(VENV)/bin/modelrouter simulate

$(VENV)/.dev-stamp: $(VENV)/bin/python pyproject.toml
	$(REQS) dev > $(VENV)/requirements-dev.txt
	$(PIP) install -q -r $(VENV)/requirements-dev.txt
	@touch $@

dev-deps: $(VENV)/.dev-stamp

rust-test:
	cargo test --quiet --features redis-backend

py-test: build dev-deps
	$(PY) -m pytest tests

lint: build dev-deps
	cargo fmt --check
	cargo clippy --quiet --all-targets --features redis-backend -- -D warnings
	cargo clippy --quiet --features python --lib -- -D warnings
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	cd /tmp && $(CURDIR)/$(PY) -m mypy.stubtest modelrouter._core --allowlist $(CURDIR)/python/stubtest-allowlist.txt

# The wheel a user installs: manylinux2014 (glibc 2.17, linked with zig from PyPI's ziglang),
# license and URLs inside, installed into a fresh venv with numpy alone (.ci/wheel_check.py).
# Cargo puts it under target/<triple>/, beside `make build`'s target/release/.
wheel-check: dev-deps
	rm -rf dist/wheel-check
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/maturin build \
		--release --zig --compatibility manylinux2014 -q -o dist/wheel-check
	$(PY) .ci/wheel_check.py dist/wheel-check

test: lint rust-test py-test wheel-check

# Peers that only the benchmarks compare against (not test or runtime dependencies).
$(VENV)/.bench-stamp: $(VENV)/.dev-stamp
	$(REQS) bench > $(VENV)/requirements-bench.txt
	$(PIP) install -q -r $(VENV)/requirements-bench.txt
	@touch $@

bench: build dev-deps $(VENV)/.bench-stamp
	@mkdir -p out
	cargo bench --quiet --bench lap --bench flow --bench cost_matrix --bench load --bench sim \
		--bench perf -- --noplot 2>&1 | tee out/criterion.txt
	$(PY) benches/run_all.py

fmt:
	cargo fmt
	$(VENV)/bin/ruff format python tests benches
	$(VENV)/bin/ruff check --fix python tests benches

clean:
	rm -rf target $(VENV) dist
