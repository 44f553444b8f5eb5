# Quick start targets. Each creates the virtual environment if it is missing.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_CPU ?= torch==2.13.0
DEMO_DIR ?= demo_run

.PHONY: venv demo test lint clean-demo

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# Install torch before the project so that pip keeps this build instead of pulling a CUDA one.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH_CPU)
	$(BIN)/python -m pip install -q -e ".[dev,parquet,explore]"
	@# lpips for the LPIPS tests, without its torchvision dependency: PyPI's torchvision pins a CUDA torch, and the
	@# tests use lpips's own code and weights with a stand-in for the torchvision AlexNet constructor.
	$(BIN)/python -m pip install -q --no-deps "lpips>=0.1.4"
	@touch $@

venv: $(BIN)/.installed

demo: venv
	bash scripts/demo.sh $(BIN)/python $(DEMO_DIR)

test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check Engineering Executors tests benchmarks
	$(BIN)/ruff format --check Engineering Executors tests benchmarks
	$(BIN)/mypy Engineering
	$(BIN)/lint-imports --no-logo

clean-demo:
	rm -rf $(DEMO_DIR)
