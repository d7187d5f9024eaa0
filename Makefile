# One-command set-up and the main jobs. `make demo` and `make test` work on a fresh Debian machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tinyalign-installed
DATA ?= ../shared/data

.PHONY: setup demo test test-fast bench align lint clean-venv

setup: $(STAMP)

# Re-runs only when the lock, the constraints or the package metadata change.
$(STAMP): requirements.lock constraints.txt setup.py
	bash scripts/setup.sh "$(VENV)"
	touch $(STAMP)

demo: setup
	$(PY) -m tinyalign_ros.cli demo --data $(DATA)

test: setup
	bash scripts/test.sh

test-fast: setup
	$(PY) -m pytest -q -m 'not real' test

bench: setup
	$(PY) benchmarks/run_all.py --data $(DATA)

align: setup
	$(PY) -m tinyalign_ros.cli align --text $(DATA)/text/ljspeech_sentences.txt

clean-venv:
	rm -rf $(VENV)
