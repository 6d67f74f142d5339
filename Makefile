# Plain runner: `make train` and `make test` create the environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv train test bench-kernel bench-hopper clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# The CPU build of torch first: otherwise pip resolves a multi-gigabyte CUDA build.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[zoo,ray,dev]"
	touch $@

venv: $(BIN)/.installed

train: venv
	$(BIN)/sb3-satr-train

test: venv
	$(BIN)/python -m pytest -q tests

bench-kernel: venv
	$(BIN)/python benchmarks/kernel.py

bench-hopper: venv
	$(BIN)/python benchmarks/hopper.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
