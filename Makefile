# Every target builds the project-local virtualenv first; a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# Exact versions and hashes of every runtime and dev dependency (Python 3.11, Linux x86_64), written by
# `make lock` from pyproject.toml; the e2e lock adds Playwright's client to the same pins.
LOCK     := requirements.lock
E2E_LOCK := requirements-e2e.lock
# the GraphiQL page's npm project (`make assets`)
GRAPHIQL_SRC := gateway/http/graphiql_src
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links

.PHONY: venv lock test test-deps cluster-deps lint demo mocks cluster bench bench-deps soak e2e e2e-deps assets clean

# The venv installs the locked dependencies (hash-checked), then the project itself without resolving any:
# a fresh clone gets exactly what CI tested.
$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ required"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r $(LOCK)
	$(PY) -m pip install -q --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

# Re-resolve both locks from pyproject.toml. Pins already in a lock are kept unless a bound excludes them;
# `make lock LOCK_ARGS=--upgrade` moves every pin to the newest allowed. pip-tools goes into the venv here only
# (and the venv is not built from the lock first, so a broken lock can always be regenerated).
lock:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q 'pip-tools>=7.4,<8'
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile $(LOCK_FLAGS) $(LOCK_ARGS) --extra dev \
		-o $(LOCK) pyproject.toml
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile $(LOCK_FLAGS) $(LOCK_ARGS) --extra dev --extra e2e \
		-c $(LOCK) -o $(E2E_LOCK) pyproject.toml

lint: venv
	$(VENV)/bin/ruff check .

# The edge tests (tests/test_edge.py) and `make bench`'s under-attack scenario drive Debian's slowhttptest, and
# run the same attack through Debian's haproxy with deploy/haproxy/edge.cfg; tests/test_metrics.py runs Debian's
# prometheus against a gateway and its promtool on deploy/observability/alerts.yml: all installed when absent.
# The store tests start throwaway PostgreSQL and Redis servers (testing/servers.py) from Debian's binaries.
test-deps:
	@command -v slowhttptest >/dev/null 2>&1 && command -v haproxy >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slowhttptest haproxy prometheus >/dev/null; }
	@{ command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } && command -v redis-server >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server >/dev/null; }

# schema-check: the served schema equals schema.graphql and schema.federation.graphql, and breaks nothing of
# schema/released.graphql unless CHANGELOG.md lists it under a new major version (docs/schema-evolution.md).
# The Node clients some tests drive (tests/clients/) are installed by those tests with `npm ci` under var/node/.
test: lint test-deps
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ucgw schema-check
	$(PY) -m pytest -q -m "not e2e"

demo: venv
	$(VENV)/bin/ucgw demo

mocks: venv
	$(VENV)/bin/ucgw mocks

# Browser end-to-end test: Debian's chromium (installed when absent) driven by Playwright's Python
# client (from the e2e lock); no browser is downloaded.
$(VENV)/.e2e-stamp: $(E2E_LOCK) $(STAMP)
	$(PY) -m pip install -q --require-hashes -r $(E2E_LOCK)
	@touch $@

e2e-deps: $(VENV)/.e2e-stamp
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# axe-core for the accessibility test comes from the page's npm lock (graphiql_src/node_modules)
$(GRAPHIQL_SRC)/node_modules/.package-lock.json: $(GRAPHIQL_SRC)/package-lock.json
	cd $(GRAPHIQL_SRC) && npm ci --no-audit --no-fund --loglevel=error

e2e: e2e-deps $(GRAPHIQL_SRC)/node_modules/.package-lock.json
	$(PY) -m pytest -q -m e2e tests/e2e

# The replicated deployment on this machine (gateway/cluster.py): Debian's PostgreSQL, Redis and HAProxy
# (installed when absent), the mocks and UCGW_REPLICAS gateway replicas (default 3) behind HAProxy on port 8000,
# data and secrets under var/cluster/. Ctrl-C stops everything it started.
UCGW_REPLICAS ?= 3
CLUSTER_PORT ?= 8000
cluster-deps:
	@command -v haproxy >/dev/null 2>&1 && command -v redis-server >/dev/null 2>&1 && { command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server haproxy >/dev/null; }

cluster: venv cluster-deps
	$(VENV)/bin/ucgw cluster --replicas $(UCGW_REPLICAS) --port $(CLUSTER_PORT)

# The GraphiQL page's bundle (gateway/http/static/graphiql/ucgw-graphiql.{js,css}) from gateway/http/graphiql_src:
# `npm ci` installs exactly the lock, esbuild writes the same bytes each time (the built files are committed;
# `make assets && git diff --exit-code gateway/http/static` checks it). Needs Node 20 and npm.
assets:
	cd $(GRAPHIQL_SRC) && npm ci --no-audit --no-fund --loglevel=error && node build.mjs

soak: venv
	$(PY) bench/soak.py

# `make bench` drives the warm path and its floor with Debian's wrk as well (scenario 8): installed when absent.
bench-deps:
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }

# bench/run.py: one gateway against its sources; bench/cluster.py: the replicas of `make cluster` through HAProxy.
bench: venv test-deps bench-deps
	$(PY) bench/run.py
	$(PY) bench/cluster.py

clean:
	rm -rf $(VENV) var .pytest_cache
