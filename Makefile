# mirbench — `make bench TASK=sr` runs the benchmark, `make test` the tests.
# Both create/refresh the virtualenv (.venv) on first use.
PYTHON   ?= python3
VENV     ?= .venv
TASK     ?= sr
PROFILE  ?= smoke
METHODS  ?=
DATASETS ?=
DEVICES  ?= 1
JOBS     ?= 0
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

# figures a task adds to its leaderboard after the runs (they read the finished runs)
REPORT_inpaint = $(PY) -m tasks.inpaint.sweep --profile $(PROFILE)
REPORT_interp  = $(PY) -m tasks.interp.leaderboard --profile $(PROFILE)
# speed / cost scripts of a task (`make perf TASK=...`)
PERF_sr      = $(PY) -m benchmark.perf.sr $(ARGS) && $(PY) -m benchmark.perf.data
PERF_inpaint = $(PY) -m tasks.inpaint.perf_rsa $(ARGS)
PERF_interp  = $(PY) -m tasks.interp.perf_cost $(ARGS)

bench: $(STAMP)
	$(PY) -m benchmark run --task $(TASK) --profile $(PROFILE) --devices $(DEVICES) --jobs $(JOBS) --logger $(LOGGER) \
		$(if $(METHODS),--methods $(METHODS)) $(if $(DATASETS),--datasets $(DATASETS)) $(ARGS)
	$(if $(findstring --dry-run,$(ARGS)),,$(REPORT_$(TASK)))

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
	$(if $(PERF_$(TASK)),$(PERF_$(TASK)),@echo "no speed/cost script for task $(TASK)")

clean-runs:
	rm -rf runs results
