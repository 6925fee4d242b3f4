# lstm-forecast: `make train` and `make test` work on a fresh machine with only Python 3.11.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The install does not compile every module of every dependency (torch, sympy, scipy...) to bytecode:
# that took pip 80 s of a 140 s install. Python compiles the modules a command imports the first time it
# imports them and caches that, so the commands below keep the bytecode cache on even where the
# environment turns it off (PYTHONDONTWRITEBYTECODE): __pycache__ folders are git-ignored. The install
# imports what every run and test imports once, so the processes a test run starts together do not
# each compile it again. Two processes share that out over two cores: one imports torch, Lightning and
# the package; the other first what Lightning imports without torch (sympy, scipy.signal, matplotlib,
# pandas), then what fewer tests import (MLflow alone compiles 540 modules: 5 s). With the caches
# emptied: 32 s, against 45 s for one process importing the first list and matplotlib only.
export PYTHONDONTWRITEBYTECODE :=
IMPORT := $(PY) -c "import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]"
WARM_IMPORTS := lstm_forecast.training.run lstm_forecast.inference.predict lstm_forecast.inference.evaluate \
	lstm_forecast.api.forecaster lstm_forecast.evaluation.figure_layout torch.utils.tensorboard \
	tensorboard.backend.event_processing.event_accumulator pytest xdist hypothesis
WARM_IMPORTS_BESIDE := sympy scipy.signal matplotlib.figure matplotlib.dates matplotlib.backends.backend_agg \
	pandas mlflow optuna hydra_plugins.hydra_optuna_sweeper.optuna_sweeper \
	hydra_plugins.hydra_submitit_launcher.submitit_launcher hydra_plugins.hydra_joblib_launcher.joblib_launcher \
	onnx onnxruntime pip._internal.commands.install pip._internal.commands.wheel

.DEFAULT_GOAL := help
.PHONY: help install train test test-fast lint format bench bench-gpu accuracy accuracy-cell accuracy-cell-given clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# uv installs the package and its dependencies (12 s; pip took 45 s, most of it weighing every file the
# indexes list), pip and setuptools too, from where pip's configuration says pip would take them
# (scripts/uv_pip_settings.py). The venv starts without pip: the pip wheel bundled with Python installs
# uv in it (3 s against 13 s for python -m venv, which installs and compiles pip, and pip's upgrade).
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv --without-pip $(VENV)
	$(PY) scripts/uv_pip_settings.py --install-uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) $$($(PY) scripts/uv_pip_settings.py) \
		-c constraints.txt pip setuptools wheel -e ".[dev,sweep]"
	@echo "importing what runs and tests import, once, to fill the bytecode cache"
	@$(IMPORT) $(WARM_IMPORTS_BESIDE) & beside=$$!; $(IMPORT) $(WARM_IMPORTS) && wait $$beside
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the package with dev and sweep extras

train: $(STAMP)  ## train on the built-in synthetic data (extra Hydra overrides: make train ARGS="...")
	$(PY) -m lstm_forecast.train $(ARGS)

# Two pytest workers with one torch thread each: the suite is mostly process start-up and tiny
# trainings, which a single worker leaves half the cores idle for (CI has 2 cores).
TEST_WORKERS ?= 2

test: $(STAMP)  ## run the whole test suite (TEST_WORKERS=2 processes)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n $(TEST_WORKERS) $(ARGS)

test-fast: $(STAMP)  ## skip the slow and DDP tests
	$(PY) -m pytest -m "not slow and not ddp" $(ARGS)

lint: $(STAMP)  ## ruff lint and format check
	$(PY) -m ruff check src tests scripts
	$(PY) -m ruff format --check src tests scripts

format: $(STAMP)  ## apply ruff fixes and formatting
	$(PY) -m ruff check --fix src tests scripts
	$(PY) -m ruff format src tests scripts

bench: $(STAMP)  ## run the CPU benchmarks (JSON in scripts/results/)
	$(PY) scripts/bench_data.py
	$(PY) scripts/bench_train.py
	$(PY) scripts/bench_panel.py

bench-gpu: $(STAMP)  ## GPU throughput table (exits cleanly without a GPU)
	$(PY) scripts/bench_gpu.py

# The accuracy protocol (docs/accuracy_protocol.md): hours of CPU; resumable, finished runs are kept.
ETTH1 ?= ../shared/data/ETTh1.csv
M4_TRAIN ?= ../shared/data/m4_weekly_train.parquet
M4_TEST ?= ../shared/data/m4_weekly_test.parquet
ACCURACY_DATA = --etth1 $(ETTH1) --m4-train $(M4_TRAIN) --m4-test $(M4_TEST)

accuracy: $(STAMP)  ## every cell of the accuracy protocol -> docs/accuracy.md (ARGS="--dry-run" for the plan)
	$(PY) scripts/accuracy.py $(ACCURACY_DATA) $(ARGS)

# Checked before the install prerequisite, so a forgotten CELL fails at once.
accuracy-cell-given:
	@test -n "$(CELL)" || { echo "error: give the cell, e.g. make accuracy-cell CELL=etth1:bilstm:h96 (ids: make accuracy ARGS=--list)" >&2; exit 2; }

accuracy-cell: accuracy-cell-given $(STAMP)  ## one cell of the accuracy protocol: make accuracy-cell CELL=etth1:bilstm:h96
	$(PY) scripts/accuracy.py $(ACCURACY_DATA) --cell $(CELL) $(ARGS)

clean:  ## remove run outputs and caches (keeps .venv)
	find outputs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
