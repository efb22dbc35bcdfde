# Set-up is two commands: `make run` and `make test`. Everything lives in .venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.build-stamp
SOURCES := $(shell find src python -type f \( -name '*.rs' -o -name '*.py' -o -name '*.pyi' \) 2>/dev/null) Cargo.toml pyproject.toml

.PHONY: run test bench lint fmt build dev-deps rust-test py-test clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip "maturin>=1.9.4,<2" numpy "matplotlib>=3.7"

# Release build of the extension, installed into .venv (rebuilt when sources change).
$(STAMP): $(VENV)/bin/python $(SOURCES)
	$(VENV)/bin/maturin develop --release -q
	@touch $(STAMP)

build: $(STAMP)

run: build
	$(VENV)/bin/modelrouter simulate

$(VENV)/.dev-stamp: $(VENV)/bin/python pyproject.toml
	$(PIP) install -q "pytest>=8" "hypothesis>=6.100" "scipy>=1.11" "ortools>=9.8" \
		"mypy>=1.10" "ruff>=0.5" "lap>=0.5" "matplotlib>=3.7" \
		"psycopg[binary]>=3.1" fastapi uvicorn httpx schemathesis playwright "openai>=1.40" "litellm>=1.40" "aiohttp>=3.9"
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

test: lint rust-test py-test

# Peers that only the benchmarks compare against (not test or runtime dependencies).
$(VENV)/.bench-stamp: $(VENV)/.dev-stamp
	$(PIP) install -q "uvicorn[standard]>=0.29" "litellm[proxy]>=1.40"
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
