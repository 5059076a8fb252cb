"""Differential test: the fast simulator must reproduce the reference simulator.

Both simulators get the same calls (dispatches, advance_to targets, run_until_idle) and must show,
after every call, the same records (integer fields equal, times equal to a relative 1e-9 with
identical NaN positions), iteration counts and clocks, and the same router's view: instance_state(),
decode_totals(), completions() and each instance's running requests (with their generated tokens
and whether their prefill is done) and waiting queue, as of the last iteration finished.

Times may differ in the last bits only because the fast simulator sums runs of skipped decode
iterations in closed form. A target that falls exactly on an iteration boundary could then start
an iteration in one simulator and not in the other (the strict ``busy_until_s < T`` test), so
targets and arrivals are computed from each simulator's own clock (``now_s + step``: a step of 0
repeats the target exactly) and the profiles use "odd" coefficients so that no other target
lands on a boundary.

On a failure hypothesis shrinks the scenario and prints it as a Python script (``repro``) that
replays the calls on both simulators.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from llm_routing_env.cluster import ClusterConfig, SchedulerConfig
from llm_routing_env.profiles import LatencyProfile
from llm_routing_env.sim import ClusterSimulator, ReferenceSimulator

RTOL, ATOL = 1e-9, 1e-12

# Custom profiles. TINY holds 24 blocks (384 tokens): a couple of requests force preemptions.
PROFILES = {
    "tiny": LatencyProfile(
        name="diff-tiny", c0_ms=3.7, c1_ms_per_token=0.113, c2_ms_per_token_above_knee=0.21, knee_tokens=48,
        c3_ms_per_chunk_token_sq=1.3e-4, c4_ms_per_chunk_prior_token=2.1e-4,
        c5_ms_per_decode_context_token=1.7e-3, kv_capacity_blocks=24, max_model_len=384,
    ),
    "small": LatencyProfile(
        name="diff-small", c0_ms=5.3, c1_ms_per_token=0.071, c2_ms_per_token_above_knee=0.0, knee_tokens=0,
        c3_ms_per_chunk_token_sq=0.0, c4_ms_per_chunk_prior_token=0.0,
        c5_ms_per_decode_context_token=9.1e-4, kv_capacity_blocks=110, max_model_len=512,
    ),
    "large": LatencyProfile(
        name="diff-large", c0_ms=11.9, c1_ms_per_token=0.037, c2_ms_per_token_above_knee=0.31, knee_tokens=32,
        c3_ms_per_chunk_token_sq=3e-5, c4_ms_per_chunk_prior_token=7e-5,
        c5_ms_per_decode_context_token=7.5e-4, kv_capacity_blocks=1000, max_model_len=600,
    ),
}
MAX_REQUESTS = 64
TIME_SCALE = 1.000000123456789  # makes advance targets "odd" numbers


# --------------------------------------------------------------------------------------------
# Scenarios: a cluster configuration plus a list of calls
# --------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    """A cluster configuration and a list of abstract calls.

    Calls are ``("dispatch", clusters, request_ids, instances, prompts, outputs, arrival_fracs)``
    (arrival = fraction of the cluster's current time), ``("advance", steps)`` (target = each
    cluster's current time + step) and ``("idle",)`` (run_until_idle). Each simulator computes
    them from its own clocks (see run_both).
    """

    profiles: list[str]                 # one per instance
    scheduler: str                      # "vllm-v0", "vllm-v0-chunked" (v0's chunked prefill) or "vllm-v1"
    max_num_seqs: int | None
    max_num_batched_tokens: int | None
    num_clusters: int
    calls: list[tuple] = field(default_factory=list)
    prefix_caching: bool | None = None  # (with prefixes: on, for every scheduler)

    def scheduler_kwargs(self) -> dict:
        return {"scheduler": "vllm-v1" if self.scheduler == "vllm-v1" else "vllm-v0",
                "chunked_prefill": self.scheduler == "vllm-v0-chunked", "max_num_seqs": self.max_num_seqs,
                "max_num_batched_tokens": self.max_num_batched_tokens, "prefix_caching": self.prefix_caching}

    def config(self) -> ClusterConfig:
        # (with prefixes the caches keep their KV events, whose router query is compared too)
        return ClusterConfig([PROFILES[p] for p in self.profiles], SchedulerConfig(**self.scheduler_kwargs()),
                             cache_knowledge="exact" if self.prefix_caching else "approximate")

    def repro(self, calls: list[str]) -> str:
        """A script replaying the calls made so far on both simulators."""
        lines = [
            "from tests.test_differential import PROFILES, ReferenceSimulator, ClusterSimulator",
            "from llm_routing_env.cluster import ClusterConfig, SchedulerConfig",
            "import numpy as np",
            f"config = ClusterConfig([{', '.join('PROFILES[%r]' % p for p in self.profiles)}], "
            f"SchedulerConfig({', '.join(f'{k}={v!r}' for k, v in self.scheduler_kwargs().items())}))",
            f"for sim in (ReferenceSimulator(config, {self.num_clusters}, {MAX_REQUESTS}), "
            f"ClusterSimulator(config, {self.num_clusters}, {MAX_REQUESTS})):",
        ]
        lines += ["    " + call for call in calls]
        lines.append("    print(type(sim).__name__, sim.records(), sim.instance_state(), sep='\\n')")
        return "\n".join(lines)


@st.composite
def scenarios(draw, max_steps: int = 12, profile_choices=("tiny", "tiny", "small", "large"),
              prompt_lengths=st.integers(1, 300),
              schedulers=("vllm-v0", "vllm-v0-chunked", "vllm-v1"), prefixes: bool = False) -> Scenario:
    """Random scenarios; with ``prefixes``, requests carry prefix block ids from three families
    that share leading blocks (the last id sometimes differs), and prefix caching is on."""
    num_instances = draw(st.integers(1, 4))
    # by default "tiny" is twice as likely: it is the one that forces preemptions
    profiles = draw(st.lists(st.sampled_from(profile_choices), min_size=num_instances, max_size=num_instances))
    scheduler = draw(st.sampled_from(schedulers))
    if scheduler == "vllm-v1":  # (budget >= max_num_seqs, as vLLM requires)
        budget = draw(st.sampled_from([None, 8, 24, 64]))  # None: 2048
        max_num_seqs = draw(st.sampled_from([1, 2, 3, 8] + ([None] if budget is None else [])))  # None: 256
    elif scheduler == "vllm-v0-chunked":
        budget = draw(st.sampled_from([None, 24, 64]))     # None: 512
        max_num_seqs = draw(st.sampled_from([1, 2, 3, 8] + ([None] if budget is None else [])))
    else:
        max_model_len = max(PROFILES[p].max_model_len for p in profiles)
        budget = draw(st.sampled_from([None, max_model_len]))  # None: 4096
        max_num_seqs = draw(st.sampled_from([None, 1, 2, 3, 8]))
    num_clusters = draw(st.integers(1, 3))
    scenario = Scenario(profiles, scheduler, max_num_seqs, budget, num_clusters, prefix_caching=prefixes or None)

    next_id = [0] * num_clusters
    for _ in range(draw(st.integers(1, max_steps))):
        kind = draw(st.sampled_from(["dispatch", "dispatch", "advance", "advance", "idle"]))
        if kind == "dispatch":
            batch = []
            for _ in range(draw(st.integers(1, 6))):
                c = draw(st.integers(0, num_clusters - 1))
                if next_id[c] >= MAX_REQUESTS:
                    continue
                n = draw(st.integers(0, num_instances - 1))
                max_len = PROFILES[profiles[n]].max_model_len
                prompt = draw(prompt_lengths)
                output = min(draw(st.integers(1, 300)), max_len - prompt)
                arrival_frac = draw(st.sampled_from([1.0, 0.5, 0.0]))
                ids = None
                if prefixes:
                    family, length, variant = draw(st.integers(0, 2)), draw(st.integers(0, 20)), draw(st.integers(0, 1))
                    ids = [100 * family + k for k in range(min(length, prompt // 16))]
                    if ids and variant:
                        ids[-1] += 50
                batch.append((c, next_id[c], n, prompt, output, arrival_frac, ids))
                next_id[c] += 1
            if batch:
                # one dispatch call with 1-D arrays (broadcasting and in-order queueing)
                scenario.calls.append(("dispatch",) + tuple(list(col) for col in zip(*batch)))
        elif kind == "advance":
            # per cluster: stay (a repeated target), a short step, or the far future
            steps = draw(st.lists(st.one_of(st.just(0.0), st.floats(0.0, 2.0), st.just(1e4)),
                                  min_size=num_clusters, max_size=num_clusters))
            scenario.calls.append(("advance", [dt * TIME_SCALE for dt in steps]))
        else:
            scenario.calls.append(("idle",))
    return scenario


# --------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------

INT_RECORD_FIELDS = ("status", "instance", "prompt_tokens", "output_tokens", "generated_tokens", "preemptions",
                     "prefix_hit_tokens", "prefill_tokens")
TIME_RECORD_FIELDS = ("arrival_s", "dispatch_s", "first_scheduled_s", "first_token_s", "completion_s")


def _first_mismatch(name, ref, fast, mask) -> str:
    idx = tuple(int(i) for i in np.argwhere(mask)[0])
    return f"{name}{list(idx)}: reference {ref[idx]!r} != fast {fast[idx]!r} ({int(mask.sum())} mismatches)"


def assert_same_times(name, ref, fast) -> None:
    ref, fast = np.asarray(ref, dtype=np.float64), np.asarray(fast, dtype=np.float64)
    assert ref.shape == fast.shape, f"{name}: shapes {ref.shape} != {fast.shape}"
    nan_diff = np.isnan(ref) != np.isnan(fast)
    assert not nan_diff.any(), _first_mismatch(name + " (NaN)", ref, fast, nan_diff)
    with np.errstate(invalid="ignore"):
        far = ~np.isnan(ref) & ~np.isclose(ref, fast, rtol=RTOL, atol=ATOL)
    assert not far.any(), _first_mismatch(name, ref, fast, far)


def assert_same_ints(name, ref, fast) -> None:
    ref, fast = np.asarray(ref), np.asarray(fast)
    assert ref.shape == fast.shape, f"{name}: shapes {ref.shape} != {fast.shape}"
    diff = ref != fast
    assert not diff.any(), _first_mismatch(name, ref, fast, diff)


def assert_same_state(ref: ReferenceSimulator, fast, where: str) -> None:
    """Records, instance state, iteration counts and clocks of both simulators agree."""
    try:
        r_rec, f_rec = ref.records(), fast.records()
        for name in INT_RECORD_FIELDS:
            assert_same_ints(f"records.{name}", getattr(r_rec, name), getattr(f_rec, name))
            assert getattr(f_rec, name).dtype == np.int64, f"records.{name} dtype"
        for name in TIME_RECORD_FIELDS:
            assert_same_times(f"records.{name}", getattr(r_rec, name), getattr(f_rec, name))
        r_state, f_state = ref.instance_state(), fast.instance_state()
        for f in fields(r_state):
            compare = assert_same_times if f.name == "busy_until_s" else assert_same_ints
            compare(f"instance_state.{f.name}", getattr(r_state, f.name), getattr(f_state, f.name))
        for name, r_value, f_value in zip(("decode count", "decode context"), ref.decode_totals(), fast.decode_totals()):
            assert_same_ints(f"decode_totals {name}", r_value, f_value)
        (r_count, r_total), (f_count, f_total) = ref.completions(), fast.completions()
        assert_same_ints("completions count", r_count, f_count)
        assert_same_times("completions time sum", r_total, f_total)
        for b, seen in enumerate(fast_router_requests(fast)):
            assert seen == ref.router_requests(b), f"router requests of cluster {b}"

        assert_same_ints("iterations", ref.iterations, fast.iterations)
        assert_same_times("now_s", ref.now_s, fast.now_s)
    except AssertionError as err:
        raise AssertionError(f"after {where}: {err}") from None


def fast_router_requests(fast) -> list[list[dict]]:
    """The fast simulator's instance_requests() in the reference's router_requests() form."""
    ir = fast.instance_requests()
    out = []
    for b in range(fast.B):
        instances = []
        for n in range(fast.N):
            row = b * fast.N + n
            run = ir["running_valid"][row]
            instances.append({  # running in admission order, as the reference lists them
                "running": list((int(q) - b * fast.R, int(g), bool(d)) for q, g, d in
                            zip(ir["running_request"][row][run], ir["running_generated"][row][run],
                                ir["running_prefill_done"][row][run])),
                "waiting": [int(q) - b * fast.R for q in ir["waiting_request"][row][ir["waiting_valid"][row]]]})
        out.append(instances)
    return out


def run_both(scenario: Scenario, check=None):
    """Make every call on both simulators, comparing them after each call (and calling
    ``check(ref, fast)``, if given); returns both."""
    config = scenario.config()
    ref = ReferenceSimulator(config, scenario.num_clusters, MAX_REQUESTS)
    fast = ClusterSimulator(config, scenario.num_clusters, MAX_REQUESTS)
    log: list[str] = []
    try:
        for i, call in enumerate(scenario.calls + [("idle",)]):
            # Each simulator's call is computed from its own clocks, which may differ in the last
            # bits after a closed-form decode run; a target "now + 0" then repeats the clock exactly.
            if call[0] == "dispatch":
                clusters, rids, instances, prompts, outputs, fracs, ids = call[1:]
                ids = None if all(i is None for i in ids) else ids
                log.append(f"sim.dispatch({clusters}, {rids}, {instances}, {prompts}, {outputs}, "
                           f"sim.now_s[{clusters}] * {fracs}, prefix_blocks={ids})")
                for sim in (ref, fast):
                    sim.dispatch(clusters, rids, instances, prompts, outputs, sim.now_s[clusters] * fracs,
                                 prefix_blocks=ids)
            elif call[0] == "advance":
                log.append(f"sim.advance_to(sim.now_s + {call[1]!r})")
                for sim in (ref, fast):
                    sim.advance_to(sim.now_s + call[1])
            else:
                log.append("sim.run_until_idle()")
                ref.run_until_idle()
                fast.run_until_idle()
            assert_same_state(ref, fast, f"call #{i} ({log[-1]})")
            if check is not None:
                check(ref, fast)
    except Exception:
        note(scenario.repro(log))
        raise
    return ref, fast


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_fast_matches_reference_on_random_scenarios(scenario):
    ref, _ = run_both(scenario)
    _events(scenario, ref)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios(profile_choices=("tiny",),
                 prompt_lengths=st.one_of(st.integers(1, 300), st.sampled_from([16, 32, 48]))))
def test_fast_matches_reference_with_tiny_kv_caches(scenario):
    """Only 24-block instances: preemption by recompute in many scenarios with a few requests.

    Prompts of whole blocks (16, 32, 48 tokens) dispatched together reach block boundaries in
    the same iteration, which makes several preemptions in one iteration likely.
    """
    ref, _ = run_both(scenario)
    _events(scenario, ref)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios(prefixes=True, prompt_lengths=st.one_of(st.integers(1, 300), st.sampled_from([16, 32, 48, 64]))))
def test_fast_matches_reference_with_shared_prefixes(scenario):
    """Prefix caching on, under the three schedulers: hits, shared blocks, evictions and
    preemptions of requests that share blocks."""
    ref, fast = run_both(scenario, check=check_prefix_caches)
    _events(scenario, ref)
    recs = ref.records()
    event("prefix hits" if recs.prefix_hit_tokens.sum() else "no prefix hit")
    dispatched = recs.status != 0
    assert (recs.status[dispatched] == 3).all(), "every dispatched request completes"
    assert (recs.prefill_tokens[dispatched] + recs.prefix_hit_tokens[dispatched]
            >= recs.prompt_tokens[dispatched]).all()


def check_prefix_caches(ref, fast) -> None:
    """Invariants of every instance's prefix cache (PrefixCache.check: no block both free and
    referenced, cached free blocks within the free blocks, the shared count) and KV usage
    within capacity, in both simulators."""
    for b, instances in enumerate(ref._instances):
        for n, inst in enumerate(instances):
            assert 0 <= inst.free_blocks <= inst.limits.kv_capacity_blocks
            inst.cache.check(inst.free_blocks)
            held = sum(len(r.held) for r in inst.running)
            assert inst.cache.shared == held - len(inst.cache.refs), "references are the running requests' only"
    for row, cache in fast._caches.items():
        cache.check(int(fast.free_blocks[row]))
        assert fast._lru_len[row] == len(cache.lru), "the count of cached free blocks is the cache's"
    assert ((fast.free_blocks >= 0) & (fast.free_blocks <= fast._capacity)).all()
    # what a router sees of the caches (KV events of the iterations finished) agrees
    assert_same_ints("prefix_cached_blocks", ref.prefix_cached_blocks(), fast.prefix_cached_blocks())
    for family in range(3):  # the scenarios' prefix families, and a variant's last block
        for ids in ([100 * family + k for k in range(20)], [100 * family, 100 * family + 51]):
            probe = [ids] * fast.B
            assert_same_ints(f"seen_prefix_hits({ids[:2]}...)", ref.seen_prefix_hits(probe), fast.seen_prefix_hits(probe))


def _events(scenario: Scenario, ref: ReferenceSimulator) -> None:
    """What the scenario exercised (see pytest --hypothesis-show-statistics)."""
    recs = ref.records()
    event(f"scheduler={scenario.scheduler}")
    event("preemption" if recs.preemptions.sum() else "no preemption")
    dispatched = int((recs.status > 0).sum())
    event(f"requests: {'0' if dispatched == 0 else '1-5' if dispatched <= 5 else '>5'}")


SCHEDULERS = ("vllm-v0", "vllm-v0-chunked", "vllm-v1")


def _scheduler(name: str) -> SchedulerConfig:
    """16 sequences; a 256-token budget where prefills are chunked."""
    if name == "vllm-v1":
        return SchedulerConfig(scheduler="vllm-v1", max_num_seqs=16, max_num_batched_tokens=256)
    if name == "vllm-v0-chunked":
        return SchedulerConfig(chunked_prefill=True, max_num_seqs=16, max_num_batched_tokens=256)
    return SchedulerConfig(max_num_seqs=16)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_fast_matches_reference_with_many_preemptions_per_iteration(scheduler):
    """Twelve 16-token prompts on a 24-block instance cross block boundaries together.

    The 24 blocks are all used from the first decode on (2 blocks each). At the decode of context
    33 every request needs its third block: walking the running list, each preemption of the
    tail frees 2 blocks for the next two requests, so requests 9, 10, 11, 12 are preempted in the
    same iteration and must reach the waiting head in admission order.
    """
    config = ClusterConfig([PROFILES["tiny"]], _scheduler(scheduler))
    ref, fast = ReferenceSimulator(config, 1, 16), ClusterSimulator(config, 1, 16)
    for sim in (ref, fast):
        sim.dispatch(0, np.arange(12), 0, 16, 40 + np.arange(12), 0.0)
    for t in np.linspace(0.0, 2.0, 41)[1:] * TIME_SCALE:
        for sim in (ref, fast):
            sim.advance_to(t)
        assert_same_state(ref, fast, f"advance_to({t})")
    for sim in (ref, fast):
        sim.run_until_idle()
    assert_same_state(ref, fast, "run_until_idle")
    assert ref.records().preemptions[0, 8:12].min() >= 1


def _workload(seed: int, scheduler: str):
    """300 requests on 4 instances of a small-KV profile, Poisson arrivals: many preemptions."""
    rng = np.random.default_rng(seed)
    profile = LatencyProfile(
        name="diff-workload", c0_ms=6.1, c1_ms_per_token=0.043, c2_ms_per_token_above_knee=0.17, knee_tokens=64,
        c3_ms_per_chunk_token_sq=2e-5, c4_ms_per_chunk_prior_token=4e-5, c5_ms_per_decode_context_token=1.1e-3,
        kv_capacity_blocks=64, max_model_len=640,
    )
    config = ClusterConfig([profile] * 4, _scheduler(scheduler))
    n = 300
    arrivals = np.cumsum(rng.exponential(0.05, size=n))
    prompts = rng.integers(1, 301, size=n)
    outputs = rng.integers(1, 301, size=n)
    instances = rng.integers(0, 4, size=n)
    return config, arrivals, prompts, outputs, instances


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_fast_matches_reference_on_a_large_workload(scheduler):
    config, arrivals, prompts, outputs, instances = _workload(seed=20240817, scheduler=scheduler)
    ref = ReferenceSimulator(config, 1, len(arrivals))
    fast = ClusterSimulator(config, 1, len(arrivals))
    for rid, t in enumerate(arrivals):
        for sim in (ref, fast):
            sim.advance_to(t)
            sim.dispatch(0, rid, instances[rid], prompts[rid], outputs[rid], t)
        if rid % 25 == 0:
            assert_same_state(ref, fast, f"dispatching request {rid}")
    for sim in (ref, fast):
        sim.run_until_idle()
    assert_same_state(ref, fast, "run_until_idle")
    recs = ref.records()
    assert (recs.status == 3).all()
    assert recs.preemptions.sum() > 50, "the workload is meant to exercise preemption"


def test_fast_matches_reference_when_admissions_of_a_step_share_a_cached_free_block():
    """Two requests of one step hit the same cached free block: the first takes it from the free
    blocks, the second shares it; the step's admission checks count it for both (they see the
    cache as it was before the step), which leaves request 9 waiting on a 24-block instance."""
    scenario = Scenario(["tiny"], "vllm-v0", None, None, 1, prefix_caching=True, calls=[
        ("dispatch", [0], [0], [0], [1], [1], [1.0], [[]]),
        ("dispatch", [0] * 3, [1, 2, 3], [0] * 3, [1, 1, 16], [1] * 3, [1.0] * 3, [[], [], [0]]),
        ("idle",),
        ("dispatch", [0] * 6, [4, 5, 6, 7, 8, 9], [0] * 6, [17, 33, 33, 33, 97, 97], [1] * 6, [1.0] * 6,
         [[], [0], [], [], [0], []]),
    ])
    ref, _ = run_both(scenario, check=check_prefix_caches)
    recs = ref.records()
    assert recs.prefix_hit_tokens[0, [5, 8]].tolist() == [16, 16]
    assert recs.first_scheduled_s[0, 9] > recs.first_scheduled_s[0, 8]
