# Two commands matter: `make test` and `make demo`. Both set up everything they need
# (venv, editable install with the C extension, mosquitto) and are safe to re-run.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nrfprov-installed
# Re-install when packaging or C sources change: editable installs rebuild the .so only on install.
INSTALL_DEPS := pyproject.toml $(wildcard setup.py native/build_ffi.py native/include/*.h native/src/*.c)

.PHONY: setup test lint bench demo sanitize fuzz mosquitto clean

setup: $(STAMP) mosquitto

$(STAMP): $(INSTALL_DEPS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel cffi
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# The local AWS IoT stand-in runs a real mosquitto. Debian installs it in /usr/sbin.
mosquitto:
	@if command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing mosquitto with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	else \
		echo "mosquitto is missing and I am not root: run 'sudo apt-get install mosquitto' (Debian/Ubuntu)"; \
		exit 1; \
	fi

test: setup
	$(PY) -m pytest -q

# Every flow x format x TLS backend x dialect on simulated nRF91s (UART 115200) against a local
# AWS IoT stand-in, all in-process on 127.0.0.1; prints the table. ~30 s.
demo: setup
	$(PY) -m nrfprov demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

# Benchmarks (issue 8): pytest-benchmark suites, then report.py writes benchmarks/results/summary.json,
# benchmarks/RESULTS.md and the PNG. The `bench` extra (awsiotsdk, matplotlib) is installed from
# pyproject.toml without re-installing nrfprov. The raw export is a .json.tmp (git-ignored); nothing is
# stored in .benchmarks/. A failing suite still gets a report of what ran, then make fails.
BENCH_RAW := benchmarks/results/pytest-benchmark.json.tmp
BENCH_STAMP := $(VENV)/.nrfprov-bench-installed

$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(PY) -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['bench']))" > $(VENV)/bench-requirements.txt
	$(PY) -m pip install -q -r $(VENV)/bench-requirements.txt
	@touch $@

bench: setup $(BENCH_STAMP)
	@mkdir -p benchmarks/results
	@rm -f $(BENCH_RAW)
	@status=0; \
	$(PY) -m pytest benchmarks -q -p no:cacheprovider --benchmark-only --benchmark-json=$(BENCH_RAW) \
		--benchmark-columns=min,median,max,rounds || status=$$?; \
	if [ -s $(BENCH_RAW) ]; then $(PY) benchmarks/report.py $(BENCH_RAW) || status=$$?; fi; \
	exit $$status

clean:
	rm -rf $(VENV) build dist src/*.egg-info src/nrfprov/_native*.so .pytest_cache .mypy_cache
