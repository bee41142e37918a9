# Every target builds the project-local virtualenv first; a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv test test-deps lint demo mocks bench soak e2e e2e-deps clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ required"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .

# The edge tests (tests/test_edge.py) and `make bench`'s under-attack scenario drive Debian's slowhttptest,
# installed when absent.
test-deps:
	@command -v slowhttptest >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slowhttptest >/dev/null; }

test: lint test-deps
	$(PY) -m pytest -q -m "not e2e"

demo: venv
	$(VENV)/bin/ucgw demo

mocks: venv
	$(VENV)/bin/ucgw mocks

# Browser end-to-end test: Debian's chromium (installed when absent) driven by Playwright's Python
# client; no browser is downloaded.
e2e-deps: venv
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@$(PY) -c 'import playwright' 2>/dev/null || $(PY) -m pip install -q 'playwright>=1.45'

e2e: e2e-deps
	$(PY) -m pytest -q -m e2e tests/e2e

soak: venv
	$(PY) bench/soak.py

bench: venv test-deps
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) var .pytest_cache
