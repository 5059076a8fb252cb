# Two commands do everything on a fresh machine (see README):
#   make demo   set up, then run the main job
#   make test   set up, then run the test suite (what CI runs)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-slow bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# the CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[agents,plots,dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m llm_routing_env.demo

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

bench: setup
	$(PY) benchmarks/bench_simulator.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
