# The two commands of a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_OUT ?= runs/demo
DEMO_FLAGS ?=
PIP_TORCH := "torch>=2.4,<=2.14.1" "torchvision>=0.19,<=0.29.1"

.PHONY: demo test lint bench data clean help

help:
	@echo "make demo   - create .venv, install varsec, get Fashion-MNIST, run the main job"
	@echo "make test   - create .venv, install with the dev extra, get Fashion-MNIST, run the test suite"
	@echo "make lint   - ruff over src, tests and benchmarks"
	@echo "make bench  - run the benchmark scripts (slow)"

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(PIP_TORCH)
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(PIP_TORCH)
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(VENV)/.installed $@

# Fashion-MNIST: found where it is (see `varsec data fetch --help`), else the Debian package when
# apt is there, else the official download (sha256-verified).
data: $(VENV)/.installed
	@$(BIN)/varsec data fetch fashion-mnist >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" -eq 0 ] && \
	    apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; }; } || true
	@$(BIN)/varsec data fetch fashion-mnist --download

# The main job: studies/demo.yaml at the default profile (about ten minutes on 2 cores);
# `make demo DEMO_FLAGS=--quick` for the two-minute version. Prints where the report is.
demo: $(VENV)/.installed data
	$(BIN)/varsec data info fashion-mnist
	$(BIN)/varsec demo --out $(DEMO_OUT) $(DEMO_FLAGS)

# The suite reads the real Fashion-MNIST files, so it gets them exactly as `make demo` does.
test: $(VENV)/.installed-dev data
	@$(BIN)/python -m pytest -q -m "not benchmark"; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "error: no tests were collected"; fi; exit $$rc

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/data.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist src/*.egg-info
