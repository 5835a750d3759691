# mirbench — `make bench TASK=sr` runs the benchmark, `make test` the tests.
# Both create/refresh the virtualenv (.venv) on first use.
PYTHON   ?= python3
VENV     ?= .venv
TASK     ?= sr
PROFILE  ?= smoke
METHODS  ?=
DATASETS ?=
DEVICES  ?= 1
LOGGER   ?= csv
DATASET  ?= all
ARGS     ?=

PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: bench test regress leaderboard list data perf venv clean-runs

$(STAMP): pyproject.toml .ci/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c .ci/constraints.txt -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

bench: $(STAMP)
	$(PY) -m benchmark run --task $(TASK) --profile $(PROFILE) --devices $(DEVICES) --logger $(LOGGER) \
		$(if $(METHODS),--methods $(METHODS)) $(if $(DATASETS),--datasets $(DATASETS)) $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

regress: $(STAMP)
	$(PY) -m benchmark regress --task $(TASK) --profile $(PROFILE) $(ARGS)

leaderboard: $(STAMP)
	$(PY) -m benchmark leaderboard --task $(TASK) --profile $(PROFILE)

list: $(STAMP)
	$(PY) -m benchmark list

data: $(STAMP)
	$(PY) -m datamodules.download $(DATASET) $(ARGS)

perf: $(STAMP)
	$(PY) -m pip install -q -c .ci/constraints.txt -e ".[bench]"
	$(PY) -m benchmark.perf.sr $(ARGS)
	$(PY) -m benchmark.perf.data

clean-runs:
	rm -rf runs results
