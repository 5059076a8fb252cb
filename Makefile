# Two commands do everything on a fresh machine (see README):
#   make demo   set up, then run the main job
#   make test   set up, then run the test suite (what CI runs)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo oracle-lookahead test test-slow test-all bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# the CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[agents,plots,dev]'
	touch $@

setup: $(VENV)/.installed

ROSTER := random,rr,lor,lor-waiting,p2c,lot,least-kv,lwl,max-capacity,min-min,impact,bucket,oracle-lwl
AGENTS := models/dqn-baseline.zip,models/dqn-aware.zip,models/dqn-guided.zip,models/ppo-agnostic.zip

# the main job: the shipped agents against every baseline on the paper's setting, 20 episodes
demo: setup
	$(PY) evaluate.py --scenario paper-v100 --policies $(ROSTER),$(AGENTS) --episodes 20 --seed 0

# the oracle-lookahead figure the README quotes, with its result file in docs/results/ (tens of ms of
# simulation per decision: 4 episodes of 2,000 requests take several minutes)
LOOKAHEAD_ARGS ?= --episodes 4 --seed 0
LOOKAHEAD_OUT ?= docs/results/oracle-lookahead
oracle-lookahead: setup
	$(PY) evaluate.py --scenario paper-v100 --policies rr,lwl,oracle-lwl,oracle-lookahead $(LOOKAHEAD_ARGS) \
		--json $(LOOKAHEAD_OUT).json --no-progress | tee $(LOOKAHEAD_OUT).txt

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

# everything, with the optional RLlib and TorchRL extras (ray pins an older gymnasium)
test-all: setup
	$(VENV)/bin/pip install --quiet -e '.[rllib,torchrl]'
	$(PY) -m pytest -q -m "slow or not slow"

bench: setup
	$(PY) benchmarks/bench_simulator.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
