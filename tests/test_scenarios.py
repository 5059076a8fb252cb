"""Scenarios: shipped names, TOML files, errors, the saturation tool and its cache."""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from llm_routing_env import scenarios as S


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_ROUTING_ENV_CACHE", str(tmp_path / "cache"))
    S._SATURATION_MEMO.clear()


def test_shipped_scenarios_match_the_issue():
    names = S.scenario_names()
    for name in ("paper-v100", "paper-v100-heavy", "paper-a100", "paper-a100-chunked", "paper-v100-8x",
                 "azure-conv", "azure-code", "mixed-fleet", "azure-conv-v100"):
        assert name in names
    s = S.load_scenario("paper-v100")
    assert s.instances == ("llama2-7b-v100",) * 4 and s.rate_per_s == 20 and s.num_requests == 2000
    assert S.load_scenario("paper-a100-chunked").chunked_prefill
    assert S.load_scenario("paper-v100-8x").num_instances == 8


def test_workloads_are_seeded():
    s = S.load_scenario("paper-v100").with_overrides(num_requests=50)
    a, b, c = s.make_workload(1), s.make_workload(1), s.make_workload(2)
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    np.testing.assert_array_equal(a.output_tokens, b.output_tokens)
    assert not np.array_equal(a.arrival_s, c.arrival_s)
    assert len(a) == 50 and a.mean_rate_per_s == pytest.approx(20, rel=0.5)


def test_fitted_trace_scenario_needs_no_file_and_is_seeded():
    s = S.load_scenario("azure-code").with_overrides(num_requests=300, load=None, rate_per_s=10.0)
    assert s.trace == "azure-code" and not s.is_trace_file
    w = s.make_workload(3)
    fit = w.context_fit  # the window of 300 arrives at 10 req/s; the over-long prompts are refused
    assert len(fit.source) == 300 and fit.source.mean_rate_per_s == pytest.approx(10.0, rel=1e-6)
    refused = int(np.sum(fit.source.prompt_tokens >= s.max_model_len))
    assert fit.rejected_overlong == refused > 0 and len(w) == 300 - refused
    assert np.array_equal(w.arrival_s, fit.source.arrival_s[fit.served_index])
    assert (w.prompt_tokens + w.output_tokens <= s.max_model_len).all()
    clip = s.with_overrides(overlong="clip").make_workload(3)  # the same window, every request served
    assert len(clip) == 300 and clip.context_fit.clipped_at_context >= refused
    np.testing.assert_array_equal(clip.arrival_s, fit.source.arrival_s)
    with pytest.raises(ValueError, match=r"request \d+ .* > max_model_len=4096"):
        s.with_overrides(overlong="error").make_workload(3)
    assert w.prompt_tokens.tobytes() == s.make_workload(3).prompt_tokens.tobytes()
    train = s.predictor_training_workload()  # 300 drawn, those beyond the context refused as in episodes
    assert len(train) == 300 - train.context_fit.rejected_overlong < 300
    assert s.predictor_training_data == ("synthetic azure-code (fitted to AzureLLMInferenceTrace_code.csv), "
                                         f"seed 1000003, {len(train)} requests (episodes use other seeds)")
    assert np.array_equal(train.prompt_tokens, s.make_workload(S.PREDICTOR_TRAIN_SEED).prompt_tokens)
    assert not np.array_equal(train.prompt_tokens, w.prompt_tokens)
    assert S.load_scenario("paper-v100").predictor_training_data == \
        "paper-mix, seed 1000003, 2,000 requests (episodes use other seeds)"


def test_trace_file_training_part_and_episodes_are_disjoint(tmp_path, write_trace):
    n = 50
    trace = write_trace(tmp_path / "t.csv", np.arange(n) * 0.5, 100 + np.arange(n), np.full(n, 7))
    s = S.Scenario("t", rate_per_s=4.0, mix=None, trace=trace, num_requests=12)
    train = s.predictor_training_workload()
    assert train.prompt_tokens.tolist() == list(range(100, 110))  # the first 20% by arrival
    assert s.predictor_training_data == "t.csv requests 0-9 (first 20% by arrival); episodes from requests 10-49"
    seen = set()
    for seed in range(40):
        w = s.make_workload(seed)
        assert len(w) == 12 and w.mean_rate_per_s == pytest.approx(4.0)
        seen |= set(w.prompt_tokens.tolist())
    assert seen.isdisjoint(train.prompt_tokens.tolist()) and min(seen) == 110 and max(seen) == 149
    whole = s.with_overrides(num_requests=1000)  # an episode takes at most the episode part
    assert whole.make_workload(0).prompt_tokens.tolist() == list(range(110, 150))
    half = S.Scenario("t", rate_per_s=4.0, mix=None, trace=trace, num_requests=5, predictor_train_fraction=0.5)
    assert len(half.predictor_training_workload()) == 25 and half.make_workload(1).prompt_tokens.min() >= 125
    own = S.Scenario("t", mix=None, trace=trace, num_requests=5)  # no rate: the trace's own times
    assert own.offered_rate() == pytest.approx(2.0) and own.make_workload(2).arrival_s.tolist() == [0, .5, 1, 1.5, 2]
    other = write_trace(tmp_path / "train.csv", [0.0, 1.0], [900, 901], [5, 6])
    sep = S.Scenario("t", rate_per_s=4.0, mix=None, trace=trace, num_requests=50, predictor_train_trace=other)
    assert sep.predictor_training_workload().prompt_tokens.tolist() == [900, 901]
    assert sep.make_workload(0).prompt_tokens.tolist() == list(range(100, 150))  # all of the trace is episodes
    assert sep.predictor_training_data == "train.csv, all 2 requests (a separate file)"


def test_a_trace_scenario_cannot_train_its_predictor_on_its_episodes(tmp_path, write_trace):
    trace = write_trace(tmp_path / "t.csv", [0.0, 1.0, 2.0], [10, 20, 30], [1, 2, 3])
    copy = tmp_path / "copy.csv"
    copy.write_bytes(Path(trace).read_bytes())
    for train in (trace, str(copy)):
        with pytest.raises(ValueError, match="is the trace itself: the predictor would be trained on the requests"):
            S.Scenario("t", rate_per_s=1.0, mix=None, trace=trace, predictor_train_trace=train)
    most = S.Scenario("t", rate_per_s=1.0, mix=None, trace=trace, predictor_train_fraction=0.99)
    assert len(most.predictor_training_workload()) == 2 and most.make_workload(0).prompt_tokens.tolist() == [30]
    with pytest.raises(ValueError, match=r"predictor_train_fraction must be in \[0, 1\)"):
        S.Scenario("t", rate_per_s=1.0, mix=None, trace=trace, predictor_train_fraction=1.0)
    with pytest.raises(ValueError, match="not both"):
        S.Scenario("t", rate_per_s=1.0, mix=None, trace=trace, predictor_train_fraction=0.5,
                   predictor_train_trace=str(copy))
    with pytest.raises(ValueError, match="the fitted trace 'azure-conv' trains its predictor on seed 1000003"):
        S.Scenario("t", rate_per_s=1.0, mix=None, trace="azure-conv", predictor_train_fraction=0.5)
    bad = tmp_path / "bad.csv"
    bad.write_text("arrival_s,prompt_tokens,output_tokens\n0,5,5\n1,x,5\n")
    with pytest.raises(ValueError, match=re.escape(f"{bad}: line 3, column 'prompt_tokens'")):
        S.Scenario("t", rate_per_s=1.0, mix=None, trace=str(bad))
    with pytest.raises(ValueError, match=r"no_such\.csv'?: no such file.*AzurePublicDataset"):
        S.Scenario("t", rate_per_s=1.0, mix=None, trace=str(tmp_path / "no_such.csv"))


def test_a_one_request_trace_is_a_valid_trace(tmp_path, write_trace):
    from agents import evaluation as E

    one = write_trace(tmp_path / "one.csv", [3.25], [200], [40])
    train = write_trace(tmp_path / "train.csv", [0.0, 1.0, 2.0], [100, 300, 50], [20, 80, 5])
    s = S.Scenario("one", mix=None, trace=one, num_requests=10, predictor_train_trace=train)
    w = s.make_workload(0)
    assert w.arrival_s.tolist() == [0.0] and w.prompt_tokens.tolist() == [200] and w.output_tokens.tolist() == [40]
    assert np.isnan(s.offered_rate())  # one request has no rate
    assert len(s.with_overrides(rate_per_s=5.0).make_workload(1)) == 1
    # without a training file its first 20% is empty: only a predictor that is not fitted can run on it
    bare = S.Scenario("one", mix=None, trace=one, num_requests=10)
    assert "is empty" in bare.predictor_training_data
    with pytest.raises(ValueError, match="no data to fit the predictor on"):
        bare.predictor_training_workload()
    built = E.build_scenario(None, trace=one, instances=2)
    assert built.trace == one and built.rate_per_s is None and built.load is None
    results = E.evaluate(["rr"], built.with_overrides(predictor_train_trace=train), episodes=1, seed=0)
    assert results[0]["arrived"] == 1
    assert results[0]["predictor_training_data"] == "train.csv, all 3 requests (a separate file)"


def test_toml_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('description = "x"\n[cluster]\nprofile = "llama2-7b-a100"\nnum_instances = 3\n'
                    'chunked_prefill = true\n[workload]\nmix = "paper-mix"\nrate_per_s = 12.5\nnum_requests = 40\n')
    s = S.load_scenario(str(path))
    assert s.name == "mine" and s.instances == ("llama2-7b-a100",) * 3 and s.chunked_prefill
    assert s.offered_rate() == 12.5 and len(s.make_workload(0)) == 40


def test_the_scheduler_in_a_scenario_file_and_as_an_override(tmp_path):
    path = tmp_path / "v1.toml"
    path.write_text('[cluster]\nprofile = "llama2-7b-a100"\nscheduler = "vllm-v1"\nmax_num_batched_tokens = 1024\n'
                    '[workload]\nmix = "paper-mix"\nrate_per_s = 5\nnum_requests = 10\n')
    s = S.load_scenario(str(path))
    limits = s.cluster_config().limits[0]
    assert s.scheduler == "vllm-v1" and (limits.max_num_batched_tokens, limits.max_num_seqs) == (1024, 256)
    assert S.load_scenario("paper-v100").scheduler == "vllm-v0"  # the paper's engine
    assert S.load_scenario("paper-v100").with_overrides(scheduler="vllm-v1").cluster_config().scheduler.v1
    path.write_text('[cluster]\nscheduler = "sglang"\n[workload]\nrate_per_s = 1\n')
    with pytest.raises(ValueError, match=r"v1.toml: scheduler must be one of vllm-v0, vllm-v1; got 'sglang'"):
        S.load_scenario(str(path))
    with pytest.raises(ValueError, match=r"chunked_prefill is a vllm-v0 option"):
        S.load_scenario("paper-a100-chunked").with_overrides(scheduler="vllm-v1")


@pytest.mark.parametrize("text, message", [
    ('[cluster]\nprofile = "llama2-7b-v100"\nspeed = 3\n[workload]\nrate_per_s = 1\n', r"unknown setting.*speed"),
    ('[cluster]\nprofile = "no-such-gpu"\n[workload]\nrate_per_s = 1\n', r"unknown profile 'no-such-gpu'"),
    ('[workload]\nrate_per_s = 1\nload = 0.5\n', r"exactly one of workload.rate_per_s or workload.load"),
    ('[workload]\nrate_per_s = -1\n', r"rate_per_s must be a positive"),
    ('[workload]\nmix = "nope"\nrate_per_s = 1\n', r"unknown mix 'nope'"),
    ('[workload]\ntrace = "missing.csv"\nrate_per_s = 1\n', r"missing.csv'?: no such file nor a fitted trace"),
    ('[workload]\nmix = "paper-mix"\nrate_per_s = 1\npredictor_train_fraction = 0.2\n', r"apply to a trace file only"),
    ('[cluster]\nnum_instances = 0\n[workload]\nrate_per_s = 1\n', r"num_instances must be a positive integer"),
    ('[workload\nrate_per_s = 1\n', r"not a valid scenario file"),
    ('[extra]\nx = 1\n[workload]\nrate_per_s = 1\n', r"unknown section"),
])
def test_bad_files_name_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        S.load_scenario(str(path))


def test_unknown_scenario_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown scenario 'nope'.*paper-v100"):
        S.load_scenario("nope")


def test_saturation_is_cached_on_disk(tmp_path):
    cfg = S.load_scenario("paper-v100").with_overrides(num_instances=2).cluster_config()
    first = S.saturation_rate(cfg, "paper-mix")
    cache = json.loads((tmp_path / "cache" / "saturation.json").read_text())
    assert list(cache.values()) == [first]
    S._SATURATION_MEMO.clear()
    assert S.saturation_rate(cfg, "paper-mix") == first  # read back from disk
    # a faster profile saturates later: the tool sees the cluster
    fast = S.load_scenario("paper-v100").with_overrides(num_instances=2, profile="llama2-7b-a100").cluster_config()
    assert S.saturation_rate(fast, "paper-mix") > 1.5 * first


def test_saturation_key_changes_with_everything_that_determines_the_rate(tmp_path, monkeypatch):
    from llm_routing_env.sim import scheduler
    from llm_routing_env.cluster import ClusterConfig, SchedulerConfig
    from llm_routing_env.profiles import get_profile

    v100 = get_profile("llama2-7b-v100")

    def key(profile=v100, scheduler=SchedulerConfig(), mix="paper-mix", trace=None, overlong="reject"):
        return S._saturation_key(ClusterConfig([profile] * 2, scheduler), mix, trace, overlong)

    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("arrival_s,prompt_tokens,output_tokens\n0,100,10\n1,200,20\n")
    b.write_text("arrival_s,prompt_tokens,output_tokens\n0,100,10\n1,200,21\n")  # one length differs
    base = key()
    variants = {
        "coefficient": key(profile=dataclasses.replace(v100, c5_ms_per_decode_context_token=1e-3)),
        "kv capacity": key(profile=dataclasses.replace(v100, kv_capacity_blocks=v100.kv_capacity_blocks + 16)),
        "max_model_len": key(profile=dataclasses.replace(v100, max_model_len=2048)),
        "chunked prefill": key(scheduler=SchedulerConfig(chunked_prefill=True)),
        "max_num_seqs": key(scheduler=SchedulerConfig(max_num_seqs=64)),
        "watermark": key(scheduler=SchedulerConfig(watermark_frac=0.02)),
        "overlong": key(overlong="clip"),
        "trace a": key(mix=None, trace=str(a)),
        "trace b": key(mix=None, trace=str(b)),
    }
    assert len({base, *variants.values()}) == 1 + len(variants), variants
    assert key() == base  # and stable
    # the code version: a changed simulator source (its step rules) gives another key
    changed = tmp_path / "scheduler.py"
    changed.write_bytes(open(scheduler.__file__, "rb").read() + b"# changed\n")
    S._code_version.cache_clear()
    monkeypatch.setattr(scheduler, "__file__", str(changed))
    try:
        assert key() != base
    finally:
        monkeypatch.undo()
        S._code_version.cache_clear()
    assert key() == base


def test_a_cache_that_cannot_be_written_is_said_once(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("LLM_ROUTING_ENV_CACHE", str(blocker / "cache"))  # mkdir fails under a file
    monkeypatch.setattr(S, "_CACHE_WRITE_WARNED", False)
    two = S.load_scenario("paper-v100").with_overrides(num_instances=2).cluster_config()
    three = S.load_scenario("paper-v100").with_overrides(num_instances=3).cluster_config()
    with pytest.warns(RuntimeWarning, match=r"cannot write the saturation cache .*a-file/cache/saturation.json"):
        rate = S.saturation_rate(two, "paper-mix")
    assert rate > 0 and S.saturation_rate(two, "paper-mix") == rate  # still used (from memory)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second failure is not said again
        assert S.saturation_rate(three, "paper-mix") > rate


def test_tests_do_not_use_the_home_cache(monkeypatch):
    """conftest points the cache at a temporary directory for the whole session."""
    from pathlib import Path

    monkeypatch.undo()  # (this file's private_cache): back to the session's setting
    assert not S._cache_file().is_relative_to(Path.home())


def test_saturation_scales_with_instances():
    two = S.measure_saturation_rate(S.load_scenario("paper-v100").with_overrides(num_instances=2).cluster_config(),
                                    requests_per_instance=500)
    four = S.measure_saturation_rate(S.load_scenario("paper-v100").cluster_config(), requests_per_instance=500)
    assert four == pytest.approx(2 * two, rel=0.15)


def test_listing_prints_one_line_per_scenario_with_its_load(capsys):
    S.main(["paper-v100", "mixed-fleet"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("paper-v100") and "load" in out[0] and "saturation" in out[0]
    assert any(line.startswith("mixed-fleet") for line in out)


def test_the_regime_scenarios_take_their_kv_from_vllms_memory_arithmetic():
    from llm_routing_env.memory import LLAMA2_7B, V100_16GB, kv_cache_plan
    from llm_routing_env.profiles import get_profile
    from llm_routing_env.sim import ClusterSimulator

    plan = kv_cache_plan(LLAMA2_7B, V100_16GB, gpu_memory_utilization=0.95, max_num_batched_tokens=2048,
                         max_num_seqs=128)
    p = get_profile("llama2-7b-v100-16gb")
    assert p.kv_capacity_blocks == plan.num_kv_blocks == 292 and p.max_model_len == 2048 <= plan.max_model_len_tokens
    assert p.coefficients == get_profile("llama2-7b-v100").coefficients  # same V100 timings
    s = S.load_scenario("paper-v100-regime")
    assert s.instances == ("llama2-7b-v100-16gb",) * 4 and s.rate_per_s == 20 and s.num_requests == 2000
    s8 = S.load_scenario("paper-v100-8x-regime")
    assert s8.instances == ("llama2-7b-v100-16gb",) * 8 and s8.rate_per_s == 40 and s8.num_requests == 4000

    def round_robin_preemptions(scenario) -> int:
        w = scenario.with_overrides(num_requests=600).make_workload(0)
        sim = ClusterSimulator(scenario.cluster_config(), num_clusters=1, max_requests=len(w))
        for i in range(len(w)):
            sim.advance_to(w.arrival_s[i])
            sim.dispatch(0, i, i % scenario.num_instances, w.prompt_tokens[i], w.output_tokens[i], w.arrival_s[i])
        sim.run_until_idle()
        return int(sim.records().preemptions[0].sum())

    # the regime is memory-bound: round-robin preempts there, never on the 32 GB cluster
    assert round_robin_preemptions(s) > 0
    assert round_robin_preemptions(S.load_scenario("paper-v100")) == 0


# --- shared prefixes and sessions (issue #13 §5) ------------------------------------------------

MOONCAKE_CONV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mooncake_fast25" / \
    "conversation_trace.jsonl"
SESSION_SCENARIOS = ("multiturn-chat", "shared-prefix-tenants", "low-sharing")


@pytest.mark.parametrize("name", SESSION_SCENARIOS)
def test_session_scenarios_are_seeded_and_carry_prefixes_and_sessions(name):
    s = S.load_scenario(name).with_overrides(load=None, rate_per_s=12.0, num_requests=300)
    assert s.scheduler == "vllm-v1" and s.cluster_config().scheduler.caches_prefixes
    a, b = s.make_workload(3), s.make_workload(3)
    assert len(a) == 300 and a.prefix_block_tokens == 16 and a.session_ids is not None
    for field in ("arrival_s", "prompt_tokens", "output_tokens", "session_ids"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert all(np.array_equal(x, y) for x, y in zip(a.prefix_hashes, b.prefix_hashes))
    share = a.repeated_prefix_fraction()
    assert (share == 0.0) if name == "low-sharing" else (share > 0.3)  # 300 requests: 25 s of steady state
    assert "sessions" in s.predictor_training_data


@pytest.mark.parametrize("name", SESSION_SCENARIOS)
def test_session_scenarios_pass_the_env_checkers(name):
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    env = gym.make("llm_routing_env/LLMRouting-v0", scenario=name, rate_per_s=12.0, num_requests=30)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_a_session_scenario_in_a_file(tmp_path):
    path = tmp_path / "chat.toml"
    path.write_text('[cluster]\nprofile = "llama3.1-8b-a100"\nnum_instances = 2\nscheduler = "vllm-v1"\n'
                    '[workload]\nsessions = "chat"\nrate_per_s = 5.0\nnum_requests = 50\n', encoding="utf-8")
    s = S.load_scenario(str(path))
    assert s.sessions == "chat" and s.mix is None and len(s.make_workload(0)) == 50
    path.write_text(path.read_text().replace('"chat"', '"nope"'), encoding="utf-8")
    with pytest.raises(ValueError, match="unknown session workload 'nope'; known: chat, tenants, no-sharing"):
        S.load_scenario(str(path))
    path.write_text(path.read_text().replace('"nope"', '"chat"') + 'mix = "paper-mix"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="give exactly one of workload.mix, workload.trace or workload.sessions"):
        S.load_scenario(str(path))
    path.write_text(path.read_text().replace('mix = "paper-mix"\n', "trace_windows = [0.2, 0.8]\n"), encoding="utf-8")
    with pytest.raises(ValueError, match="trace_windows apply to a trace file only"):
        S.load_scenario(str(path))


def test_session_saturation_key_depends_on_the_generator():
    from llm_routing_env.cluster import ClusterConfig

    cfg = ClusterConfig(["llama3.1-8b-a100"] * 2)
    keys = {S._saturation_key(cfg, None, None, "reject", name) for name in ("chat", "tenants", "no-sharing")}
    assert len(keys) == 3 and S._saturation_key(cfg, "paper-mix", None) not in keys


def test_mooncake_conv_needs_its_file(monkeypatch, tmp_path):
    monkeypatch.delenv("LLM_ROUTING_ENV_MOONCAKE_CONV", raising=False)
    assert "mooncake-conv" in S.scenario_names() and "mooncake-conv-heldout" in S.scenario_names()
    with pytest.raises(ValueError, match=r"scenario 'mooncake-conv' replays conversation_trace.jsonl, which does not "
                                         r"ship: download it from github.com/kvcache-ai/Mooncake, FAST25-release/traces/"
                                         r".* and set LLM_ROUTING_ENV_MOONCAKE_CONV=PATH/conversation_trace.jsonl"):
        S.load_scenario("mooncake-conv")
    monkeypatch.setenv("LLM_ROUTING_ENV_MOONCAKE_CONV", str(tmp_path / "absent.jsonl"))
    with pytest.raises(ValueError, match=r"LLM_ROUTING_ENV_MOONCAKE_CONV='.*absent.jsonl': no such file"):
        S.load_scenario("mooncake-conv-heldout")


def test_listing_says_which_file_a_scenario_needs(monkeypatch, capsys):
    monkeypatch.delenv("LLM_ROUTING_ENV_MOONCAKE_CONV", raising=False)
    S.main(["mooncake-conv"])
    out = capsys.readouterr().out
    assert out.startswith("mooncake-conv") and "needs a file" in out and "LLM_ROUTING_ENV_MOONCAKE_CONV" in out


def test_trace_windows_split_training_and_held_out_episodes(tmp_path, write_trace):
    path = write_trace(tmp_path / "t.csv", np.arange(100) * 0.5, [100] * 100, [10] * 100)
    train = S.Scenario("w", mix=None, trace=str(path), rate_per_s=5.0, num_requests=10, trace_windows=(0.2, 0.8))
    held = S.Scenario("h", mix=None, trace=str(path), rate_per_s=5.0, num_requests=10, trace_windows=[0.8, 1.0])
    assert "episodes from requests 20-79" in train.predictor_training_data
    assert "episodes from requests 80-99" in held.predictor_training_data
    assert held.trace_windows == (0.8, 1.0)
    with pytest.raises(ValueError, match=r"trace_windows \[0.1, 0.5\] start inside the predictor's training part"):
        S.Scenario("x", mix=None, trace=str(path), rate_per_s=5.0, num_requests=10, trace_windows=(0.1, 0.5))
    with pytest.raises(ValueError, match=r"trace_windows must be \[low, high\] fractions"):
        S.Scenario("x", mix=None, trace=str(path), rate_per_s=5.0, num_requests=10, trace_windows=(0.5, 0.5))


@pytest.mark.skipif(not MOONCAKE_CONV.exists(), reason="Mooncake traces not available")
def test_mooncake_conv_windows(monkeypatch):
    monkeypatch.setenv("LLM_ROUTING_ENV_MOONCAKE_CONV", str(MOONCAKE_CONV))
    train, held = S.load_scenario("mooncake-conv"), S.load_scenario("mooncake-conv-heldout")
    assert "episodes from requests 2,406-9,623" in train.predictor_training_data
    assert "episodes from requests 9,624-12,030" in held.predictor_training_data
    w = held.with_overrides(load=None, rate_per_s=8.0).make_workload(0)
    assert len(w) == 1000 and w.prefix_block_tokens == 512 and w.context_fit.rejected_overlong == 0
    # a 1,000-request window keeps about half the whole trace's 37% (reuse is often ~400+ requests apart)
    assert 0.1 < w.with_kv_blocks().repeated_prefix_fraction() < 0.37
