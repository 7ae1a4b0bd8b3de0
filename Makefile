# Two commands on a fresh machine (Python 3.11, nothing preinstalled):
#   make demo   -- create .venv, install, run the main job
#   make test   -- create or refresh .venv, run the whole test suite, then the compat subset in
#                  .venv-colab pinned to the Colab/Kaggle versions (TensorFlow 2.20, Keras 3.13.2)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A GPU machine gets tensorflow[and-cuda]; everything else the CPU build (no CUDA packages).
TF_EXTRA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
STAMP := $(VENV)/.installed-$(TF_EXTRA)
DEMO_ARGS ?=
PYTEST_ARGS ?=
# Two pytest workers (one per core), each running whole files so module fixtures are built once.
XDIST ?= -n 2 --dist loadfile
# The versions Colab and Kaggle ship (Aug 2026); `make test` also runs the compat subset there.
COLAB_VENV ?= .venv-colab
COLAB_PINS := "tensorflow-cpu==2.20.*" "keras==3.13.2"
COLAB_PY := $(COLAB_VENV)/bin/python
COLAB_STAMP := $(COLAB_VENV)/.installed-colab

export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: venv demo demo-real cv-real test test-main test-colab clean notebooks lint browser docs-example

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

# The CPU recipe on the 14 training cases of ../shared/data/brats2018 (<= 60 min on 2 cores),
# then Dice/HD95 of the 4 validation cases (split in ../shared/CONVENTIONS.md).
demo-real: $(STAMP)
	$(VENV)/bin/brainseg train --config configs/cpu_brats2018.json --run-dir runs/cpu_brats2018
	$(VENV)/bin/brainseg predict --model runs/cpu_brats2018 \
	  --input ../shared/data/brats2018 --overwrite \
	  --cases Brats18_CBICA_AQN_1 Brats18_TCIA02_135_1 Brats18_TCIA10_628_1 Brats18_2013_23_1 \
	  --out runs/cpu_brats2018/predictions
	$(VENV)/bin/brainseg evaluate --pred runs/cpu_brats2018/predictions --ref ../shared/data/brats2018 \
	  --cases Brats18_CBICA_AQN_1 Brats18_TCIA02_135_1 Brats18_TCIA10_628_1 Brats18_2013_23_1 \
	  --out runs/cpu_brats2018/predictions/metrics.csv

# The out-of-fold measure (docs/training.md): 5 folds over every shared real case (21 BraTS 2018 + 1
# BraTS 2021, linked into data/real), each a fixed number of steps (the recipe's time limit is off),
# each fold measured on the cases it held out into results/cv/cv_real22/fold_<k>.json (commit them:
# the measure resumes from them on any machine), then scored with bootstrap intervals there.
# Another recipe: make cv-real CV_CONFIG=configs/cpu_brats2018_aug.json CV_RUN=runs/cv_real22_aug
#   CV_ARGS="--order 4,3 --against results/cv/cv_real22" (judged against today's recipe after each fold)
REAL_CASES := $(wildcard ../shared/data/brats2018/Brats18_* ../shared/data/brats2021/BraTS2021_*)
CV_CONFIG ?= configs/cpu_brats2018.json
CV_RUN ?= runs/cv_real22
CV_ARGS ?=
cv-real: $(STAMP)
	mkdir -p data/real
	for d in $(REAL_CASES); do ln -sfn "$$(readlink -f $$d)" data/real/$$(basename $$d); done
	$(VENV)/bin/brainseg cv --config $(CV_CONFIG) --run-dir $(CV_RUN) --folds 5 \
	  --set data.root=data/real --set data.layout=brats2021 --set data.cache=data/cache/real22_f16.h5 $(CV_ARGS)

# docs/report_example and the README's demo figures, from a fresh full `brainseg demo` (tests/test_demo.py
# checks the committed example's settings against the demo's defaults).
docs-example: $(STAMP)
	rm -rf runs/demo
	$(VENV)/bin/brainseg demo --out runs/demo
	$(PY) -c "from brainseg_tf import report; print(report.publish_example('runs/demo', 'docs/report_example'))"

$(COLAB_STAMP): pyproject.toml requirements.txt
	test -x $(COLAB_PY) || $(PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_PY) -m pip install --quiet --upgrade pip
	$(COLAB_PY) -m pip install --quiet $(COLAB_PINS) -e ".[dev,notebooks]"
	$(COLAB_PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	$(COLAB_PY) -c "import tensorflow as tf, keras; print('colab env: TensorFlow', tf.__version__, 'Keras', keras.__version__)"
	touch $(COLAB_STAMP)

test: test-main test-colab

# Lint and format checks first (ruff, configured in pyproject.toml): a failure stops `make test`.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Headless Chromium for the browser checks (viewer pages, rendered notebooks): Debian's package.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); \
	  else echo "chromium missing: sudo apt-get install chromium (the browser tests skip without it)"; fi

test-main: $(STAMP) lint browser
	@set +e; $(PY) -m pytest -q -p no:cacheprovider $(XDIST) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5)"; exit 1; fi; exit $$rc

# The compat subset (train, resume, predict, export, reload; notebooks 01, 04, 06, 08) under the pinned Colab versions.
test-colab: $(COLAB_STAMP)
	@set +e; $(COLAB_PY) -m pytest -q -p no:cacheprovider -m compat $(XDIST) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no compat tests (exit 5)"; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) $(COLAB_VENV) runs .pytest_cache

# Re-pair the notebooks after editing either side (the .py files are the reviewable source).
notebooks: $(STAMP)
	$(VENV)/bin/jupytext --sync notebooks/[0-9][0-9]_*.ipynb

# brainseg_tf vs MONAI inference on one real case (creates .venv-monai with CPU torch + MONAI on
# first use; never part of `make test`). See docs/speed.md.
.PHONY: bench-monai
bench-monai: $(STAMP)
	$(PY) -m bench.vs_monai
