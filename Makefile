# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test bench lint format clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,openvino,serve]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/steelkd experiment --config configs/experiments/demo.yaml --out demo_out
	@echo "report: demo_out/report.md"

bench: $(STAMP)
	$(BIN)/python benchmarks/all.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts

test: lint
	$(BIN)/python -m pytest -q

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks scripts

clean:
	rm -rf demo_out .pytest_cache .ruff_cache
