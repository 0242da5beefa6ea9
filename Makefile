# Two commands matter: `make test` and `make demo`. Both set up everything they need
# (venv, editable install with the C extension, mosquitto) and are safe to re-run.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nrfprov-installed
# Re-install when packaging or C sources change: editable installs rebuild the .so only on install.
INSTALL_DEPS := pyproject.toml $(wildcard setup.py native/build_ffi.py native/include/*.h native/src/*.c)

.PHONY: setup test lint bench demo sanitize fuzz mosquitto plugin clean

setup: $(STAMP) mosquitto plugin

$(STAMP): $(INSTALL_DEPS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel cffi
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# The local AWS IoT stand-in runs a real mosquitto with a plugin of ours (src/nrfprov/cloud/broker_plugin.c),
# compiled against mosquitto's and OpenSSL's headers. Debian installs mosquitto in /usr/sbin; the
# headers come from mosquitto-dev, libmosquitto-dev and libssl-dev. Missing pieces are installed
# with apt-get when we are root, else named.
mosquitto:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || missing="$$missing mosquitto"; \
	test -f /usr/include/mosquitto_plugin.h -a -f /usr/include/mosquitto_broker.h || missing="$$missing mosquitto-dev"; \
	test -f /usr/include/mosquitto.h -a -f /usr/include/mqtt_protocol.h || missing="$$missing libmosquitto-dev"; \
	test -f /usr/include/openssl/x509.h || missing="$$missing libssl-dev"; \
	command -v $(CC) >/dev/null 2>&1 || missing="$$missing gcc"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing$$missing with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "missing:$$missing; I am not root: run 'sudo apt-get install$$missing' (Debian/Ubuntu)"; \
		exit 1; \
	fi

# Build the broker plugin into its cache now, so no test pays for the compile (see cloud/plugin.py).
plugin: $(STAMP) mosquitto
	@$(PY) -c "from nrfprov.cloud.plugin import main; raise SystemExit(main())" >/dev/null

test: setup
	$(PY) -m pytest -q

# Every flow x format x TLS backend x dialect on simulated nRF91s (UART 115200) against a local
# AWS IoT stand-in, all in-process on 127.0.0.1; prints the table. ~30 s.
demo: setup
	$(PY) -m nrfprov demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy
	$(PY) -m nrfprov aws deploy --dry-run --template-out $(VENV)/nrfprov-stack.json >/dev/null
	$(VENV)/bin/cfn-lint src/nrfprov/aws/stack.json $(VENV)/nrfprov-stack.json

# Benchmarks: pytest-benchmark suites, then report.py writes benchmarks/results/summary.json,
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

# ---- native/ C core --------------------------------------------------------------------------------
# sanitize: the C under ASan + UBSan twice - a C driver (seeds + mutations, whole / chunked /
# byte-wise, exact-size heap blocks) and the Python tests/native suite against an ASan-built copy of
# the extension (libasan preloaded; leak checks off there because CPython itself "leaks" at exit).
# fuzz: atheris (libFuzzer) with json/cbor2 as oracle for FUZZ_SECONDS, on a copy of the extension built
# with gcc -fsanitize-coverage=trace-cmp (C comparisons guide libFuzzer via -use_value_profile=1; edge
# coverage would need clang). Corpus in native/fuzz/corpus (git-ignored), crashes in native/build/fuzz.
# Then the sans-IO AT core (tests/unit/at/fuzz_at.py): AT_FUZZ_RUNS programs of arbitrary modem bytes and
# commands, each fed whole and in small chunks; corpus in build/fuzz-at/corpus, crashes in build/fuzz-at.
NATIVE_BUILD := native/build
SAN_CFLAGS := -std=c99 -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
SAN_MUTATIONS ?= 3000
PLUGIN_ASAN := $(NATIVE_BUILD)/plugin-asan
FUZZ_SECONDS ?= 600
AT_FUZZ_RUNS ?= 1000000

sanitize: $(STAMP)
	@mkdir -p $(NATIVE_BUILD)
	$(PY) native/test/make_corpus.py $(NATIVE_BUILD)/corpus
	$(CC) $(SAN_CFLAGS) -Wall -Wextra -Werror -Inative/include native/src/*.c native/test/sanitize_driver.c \
		-o $(NATIVE_BUILD)/sanitize_driver
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(NATIVE_BUILD)/sanitize_driver -n $(SAN_MUTATIONS) $(NATIVE_BUILD)/corpus/*
	rm -rf $(NATIVE_BUILD)/asan
	NRFPROV_NATIVE_CFLAGS="$(SAN_CFLAGS)" NRFPROV_NATIVE_LDFLAGS="-fsanitize=address,undefined" \
		$(PY) native/build_ffi.py $(NATIVE_BUILD)/asan
	LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	NRFPROV_NATIVE_SO="$$(ls $(CURDIR)/$(NATIVE_BUILD)/asan/nrfprov/_native*.so)" \
		$(PY) -m pytest -q --capture=sys -p no:cacheprovider tests/native -m "not slow"
	@# The stand-in's broker plugin under ASan + UBSan inside a real mosquitto, leak checks on: the
	@# tests/integration/cloud tests run against it; any sanitizer report (written to files) fails. Not
	@# the two port-conflict tests: mosquitto 2.0.11 exits on a failed bind without freeing its config
	@# or calling plugin cleanup, which LeakSanitizer reports as leaks of the broker's own allocations.
	rm -rf $(PLUGIN_ASAN) && mkdir -p $(PLUGIN_ASAN)/bin $(PLUGIN_ASAN)/logs
	$(CC) $(SAN_CFLAGS) -Wall -Wextra -Werror -fPIC -shared -o $(PLUGIN_ASAN)/plugin.so \
		src/nrfprov/cloud/broker_plugin.c -lcrypto
	ln -s $(CURDIR)/tests/integration/cloud/mosquitto-asan.sh $(PLUGIN_ASAN)/bin/mosquitto
	NRFPROV_REAL_MOSQUITTO="$$(command -v mosquitto || echo /usr/sbin/mosquitto)" \
	PATH="$(CURDIR)/$(PLUGIN_ASAN)/bin:$$PATH" NRFPROV_BROKER_PLUGIN=$(CURDIR)/$(PLUGIN_ASAN)/plugin.so \
	NRFPROV_SANITIZER_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=1:log_path=$(CURDIR)/$(PLUGIN_ASAN)/logs/asan \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(CURDIR)/$(PLUGIN_ASAN)/logs/ubsan \
		$(PY) -m pytest -q -p no:cacheprovider tests/integration/cloud -k "not taken_port and not port_race"
	@if ls $(PLUGIN_ASAN)/logs/* >/dev/null 2>&1; then cat $(PLUGIN_ASAN)/logs/*; \
		echo "sanitizer reports from mosquitto + the broker plugin (above)"; exit 1; fi

fuzz: $(STAMP)
	@mkdir -p $(NATIVE_BUILD)/fuzz native/fuzz/corpus
	$(PY) native/test/make_corpus.py $(NATIVE_BUILD)/corpus
	rm -rf $(NATIVE_BUILD)/fuzzcmp
	NRFPROV_NATIVE_CFLAGS="-g -fsanitize-coverage=trace-cmp" $(PY) native/build_ffi.py $(NATIVE_BUILD)/fuzzcmp
	NRFPROV_NATIVE_SO="$$(ls $(CURDIR)/$(NATIVE_BUILD)/fuzzcmp/nrfprov/_native*.so)" \
		$(PY) tests/native/fuzz_extractor.py native/fuzz/corpus $(NATIVE_BUILD)/corpus -use_value_profile=1 \
		-max_total_time=$(FUZZ_SECONDS) -max_len=16384 -artifact_prefix=$(NATIVE_BUILD)/fuzz/ -print_final_stats=1
	@mkdir -p build/fuzz-at/corpus
	$(PY) tests/unit/at/fuzz_at.py build/fuzz-at/corpus -dict=tests/unit/at/at.dict -runs=$(AT_FUZZ_RUNS) \
		-max_len=4096 -artifact_prefix=build/fuzz-at/ -print_final_stats=1
