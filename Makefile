# The two commands of the README: `make run` and `make test`. Both create .venv if it is missing.
PYTHON312 ?= $(shell PYENV_VERSION=3.12 pyenv which python3.12 2>/dev/null || command -v python3.12 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Compiled models are cached here, across runs and refits (a cold compile costs ~40 s).
export PYTENSOR_FLAGS ?= base_compiledir=$(CURDIR)/.cache/pytensor

.PHONY: run test test-slow lint bench install clean reliability openapi-snapshot chromium

$(PY):
	$(PYTHON312) -c 'import sys; assert sys.version_info >= (3, 12), "Python 3.12+ is needed, got " + sys.version'
	$(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/forecast run

# The dashboard's browser tests drive Debian's chromium (Playwright's own browser download is not
# used): installed here when missing and apt-get can run as root, else those tests skip saying why.
CHROMIUM := /usr/bin/chromium
chromium:
	@[ -x $(CHROMIUM) ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; }; } || \
	  echo "chromium not installed: the dashboard's browser tests will skip"

test: $(STAMP) chromium
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check forecasting api tests bench

bench: $(STAMP)
	$(PY) bench/bench_import.py

# The committed API document (docs/openapi.json): rewrite it after a reviewed change of the
# contract; tests/test_api_openapi.py fails while the served document differs from it.
openapi-snapshot: $(STAMP)
	$(PY) -m api.snapshot docs/openapi.json

# The reliability harness (docs/reliability.md): about 2 hours on 2 cores. Every script runs,
# and the target fails if any found a violation. Each takes --quick for a short run.
reliability: $(STAMP)
	status=0; \
	$(PY) bench/reliability/kill_worker.py || status=1; \
	$(PY) bench/reliability/concurrent_writers.py || status=1; \
	$(PY) bench/reliability/schema_fuzz.py || status=1; \
	$(PY) bench/reliability/soak.py --minutes 30 || status=1; \
	exit $$status

clean:
	rm -rf $(VENV) .cache instance
