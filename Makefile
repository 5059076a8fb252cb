# Two commands do everything on a fresh machine (see README):
#   make demo   set up, then run the main job
#   make test   set up, then run the test suite (what CI runs)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo oracle-lookahead results cache-results regime test test-slow test-all bench clean

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

# every table under docs/results (and the plots under docs/plots) that the README quotes; each JSON
# also records the command that made it. Tens of minutes on 2 cores (oracle-lookahead not included).
EVAL := $(PY) evaluate.py --seed 0 --no-progress
results: setup
	$(EVAL) --scenario paper-v100 --policies $(ROSTER),$(AGENTS) --episodes 20 \
		--json docs/results/paper-v100.json --plot docs/plots/paper-v100 | tee docs/results/paper-v100.txt
	$(EVAL) --scenario paper-v100-heavy --policies $(ROSTER),$(AGENTS) --episodes 20 \
		--json docs/results/paper-v100-heavy.json | tee docs/results/paper-v100-heavy.txt
	$(EVAL) --scenario paper-v100-regime --policies rr,lor,least-kv,lwl,max-capacity,min-min,late-binding,kv-admission,$(AGENTS) \
		--episodes 20 --json docs/results/paper-v100-regime.json | tee docs/results/paper-v100-regime.txt
	$(EVAL) --scenario paper-v100-8x-regime --policies rr,max-capacity,late-binding,kv-admission \
		--episodes 5 --workers 1 --json docs/results/paper-v100-8x-regime.json | tee docs/results/paper-v100-8x-regime.txt
	$(EVAL) --scenario mixed-fleet --policies $(ROSTER),models/ppo-agnostic.zip --episodes 20 \
		--json docs/results/mixed-fleet.json | tee docs/results/mixed-fleet.txt
	$(EVAL) --scenario azure-conv-v100 --policies $(ROSTER),models/ppo-agnostic.zip --episodes 20 \
		--json docs/results/azure-conv-v100.json | tee docs/results/azure-conv-v100.txt
	$(EVAL) --scenario azure-conv --policies rr,lor,least-kv,lwl,min-min,models/ppo-agnostic.zip --episodes 20 \
		--json docs/results/azure-conv.json | tee docs/results/azure-conv.txt
	$(EVAL) --scenario paper-v100 --instances 8 --load 1.0 --policies rr,lor,least-kv,lwl,min-min,models/ppo-agnostic.zip \
		--episodes 20 --json docs/results/agnostic-8.json | tee docs/results/agnostic-8.txt
	$(EVAL) --scenario paper-v100 --instances 16 --load 1.0 --policies rr,lor,least-kv,lwl,min-min,models/ppo-agnostic.zip \
		--episodes 20 --json docs/results/agnostic-16.json | tee docs/results/agnostic-16.txt
	$(EVAL) --scenario paper-v100 --load 0.6,0.8,1.0,1.2,1.5 --policies rr,lor,p2c,least-kv,lwl,min-min,impact,$(AGENTS) \
		--episodes 10 --json docs/results/load-sweep.json --plot docs/plots/load-sweep | tee docs/results/load-sweep.txt
	$(EVAL) --scenario paper-v100-regime --load 0.6,0.8,1.0,1.2,1.5 --policies rr,min-min,$(AGENTS) \
		--episodes 10 --json docs/results/load-sweep-regime.json --plot docs/plots/load-sweep-regime | tee docs/results/load-sweep-regime.txt
	$(EVAL) --scenario azure-conv-h100-v1 --policies $(ROSTER),$(AGENTS) --episodes 10 \
		--json docs/results/azure-conv-h100-v1.json | tee docs/results/azure-conv-h100-v1.txt
	$(EVAL) --scenario azure-code-h100-v1 --policies $(ROSTER),$(AGENTS) --episodes 10 \
		--json docs/results/azure-code-h100-v1.json | tee docs/results/azure-code-h100-v1.txt
	$(EVAL) --scenario mixed-a100-h100-v1 --policies $(ROSTER),$(AGENTS) --episodes 10 \
		--json docs/results/mixed-a100-h100-v1.json | tee docs/results/mixed-a100-h100-v1.txt

# docs/cache-routing.md: the cache-aware baselines against round-robin and least-kv on the prefix-cache
# scenarios (5 episodes each; mooncake-conv needs LLM_ROUTING_ENV_MOONCAKE_CONV, see its scenario)
CACHE_ROUTERS := rr,least-kv,cache-aware,prefix-load,kv-router,chwbl,session-affinity
CACHE_SCENARIOS := multiturn-chat shared-prefix-tenants low-sharing mooncake-conv
cache-results: setup
	for s in $(CACHE_SCENARIOS); do \
		$(EVAL) --scenario $$s --policies $(CACHE_ROUTERS) --episodes 5 --json docs/results/$$s.json \
			| tee docs/results/$$s.txt || exit 1; done
	$(EVAL) --scenario shared-prefix-tenants --cache-knowledge exact --policies rr,cache-aware,prefix-load,kv-router \
		--episodes 5 --json docs/results/shared-prefix-tenants-exact.json | tee docs/results/shared-prefix-tenants-exact.txt
	$(PY) tools/cache_gains.py $(foreach s,$(CACHE_SCENARIOS),docs/results/$(s).json) | tee docs/results/cache-gains.md

# docs/paper-regime.md: the candidate configurations against the paper's facts (~10 min on 2 cores)
regime: setup
	$(PY) tools/paper_regime.py --episodes 10 --seed 0 --workers 2 | tee docs/results/paper-regime.txt
	$(PY) tools/paper_regime.py --eight --episodes 5 --seed 0 --workers 2 | tee docs/results/paper-regime-8x.txt

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
