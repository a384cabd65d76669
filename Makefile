# trm_jax: set up, lint, test, train. `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help setup lint format test test-slow train-cpu clean

help:
	@echo "make setup      create $(VENV) and install trm_jax[dev,torch,arc] (editable)"
	@echo "make test       setup if needed, then ruff and the default pytest suite"
	@echo "make test-slow  the slow tests (benchmarks, long training checks)"
	@echo "make lint       ruff check and ruff format --check"
	@echo "make train-cpu  generate Sudoku puzzles and run the CPU main job (~15 min on 2 cores)"
	@echo "               harder data: make train-cpu SUDOKU_GIVENS=34 SUDOKU_DATA=data/sudoku-34 SUDOKU_RUN=runs/sudoku-34"

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,torch,arc]'
	touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: setup lint
	$(VENV)/bin/pytest -q

test-slow: setup
	$(VENV)/bin/pytest -q -m slow

SUDOKU_GIVENS ?= 45
SUDOKU_DATA   ?= data/sudoku-cpu
SUDOKU_RUN    ?= runs/sudoku-cpu
# The main job's 15 minutes include setting up and generating the puzzles: the seconds those
# took since make started come off the 13-minute training budget (at least 5 minutes remain).
TRAIN_BUDGET_S ?= 780
MAKE_START     := $(shell date +%s)

$(SUDOKU_DATA)/train/dataset.json: | setup
	$(PY) -m data_gen.sudoku build --out $(SUDOKU_DATA) --num-train 1000 --num-test 500 \
		--givens $(SUDOKU_GIVENS) --seed 0

train-cpu: setup $(SUDOKU_DATA)/train/dataset.json
	@budget=$$(( $(TRAIN_BUDGET_S) - ($$(date +%s) - $(MAKE_START)) )); \
	[ $$budget -ge 300 ] || budget=300; \
	echo "Training budget: $$budget s (set-up and data took $$(( $$(date +%s) - $(MAKE_START) )) s)"; \
	set -x; $(PY) -m trm_jax.train --config=configs/sudoku_cpu.py --workdir=$(SUDOKU_RUN) \
		--config.data.path=$(SUDOKU_DATA) --config.train.time_budget_s=$$budget

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
