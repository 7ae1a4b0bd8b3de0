# Two commands on a fresh machine (Python 3.11, nothing preinstalled):
#   make demo   -- create .venv, install, run the main job
#   make test   -- create or refresh .venv, run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A GPU machine gets tensorflow[and-cuda]; everything else the CPU build (no CUDA packages).
TF_EXTRA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
STAMP := $(VENV)/.installed-$(TF_EXTRA)
DEMO_ARGS ?=
PYTEST_ARGS ?=

export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: venv demo demo-real test clean notebooks

$(STAMP): pyproject.toml requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(TF_EXTRA),notebooks,dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/brainseg demo --out runs/demo $(DEMO_ARGS)

test: $(STAMP)
	@set +e; $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5)"; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) runs .pytest_cache

# Re-pair the notebooks after editing either side (the .py files are the reviewable source).
notebooks: $(STAMP)
	$(VENV)/bin/jupytext --sync notebooks/[0-9][0-9]_*.ipynb
