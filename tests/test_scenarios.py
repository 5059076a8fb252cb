"""Scenarios: shipped names, TOML files, errors, the saturation tool and its cache."""

import dataclasses
import json

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


def test_trace_scenario_windows_and_rate():
    s = S.load_scenario("azure-code").with_overrides(num_requests=300, load=None, rate_per_s=10.0)
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


def _with_two_overlong_requests(monkeypatch):
    """Scenario.make_workload with request 5 a 5,000-token prompt (beyond a 4,096 context) and
    request 9 a 4,000-token prompt asking for 500 tokens (stops at the context: 96)."""
    original = S.Scenario.make_workload

    def with_overlong(self, seed):
        w = original(dataclasses.replace(self, overlong="clip"), seed).context_fit.source
        prompt, output = w.prompt_tokens.copy(), w.output_tokens.copy()
        prompt[5], output[5] = 5000, 10
        prompt[9], output[9] = 4000, 500
        w = dataclasses.replace(w, prompt_tokens=prompt, output_tokens=output, context_fit=None)
        return w.fit_context(self.max_model_len, self.overlong)

    monkeypatch.setattr(S.Scenario, "make_workload", with_overlong)


def test_overlong_counts_in_the_env_info(monkeypatch):
    """A workload with a prompt beyond the context and one whose prompt + output exceeds it: the
    refused one never reaches the router or the simulator, the other is served cut; the counts are
    exact in the episode's metrics (info["metrics"]) whatever the routing."""
    import gymnasium as gym

    import llm_routing_env  # noqa: F401  (registers the env)

    base = S.load_scenario("paper-v100").with_overrides(num_requests=40, rate_per_s=5.0)
    _with_two_overlong_requests(monkeypatch)
    # (overlong, requests served, rejected, clipped, position of the cut request among the served)
    for overlong, served, rejected, clipped, cut in (("reject", 39, 1, 1, 8), ("clip", 40, 0, 2, 9)):
        for mode, action in (("arrival", lambda i: 0), ("arrival", lambda i: i % 4), ("tick", lambda i: i % 5)):
            env = gym.make("llm_routing_env/LLMRouting-v0", scenario=base, mode=mode, overlong=overlong)
            env.reset(seed=0)
            core = env.unwrapped.core
            assert int(core.n_req[0]) == served  # the refused request is not in the episode
            i, done = 0, False
            while not done:
                _, _, term, trunc, info = env.step(action(i))
                i, done = i + 1, term or trunc
            m = info["metrics"]
            assert (m["arrived"], m["completed"]) == (served, served)
            assert (m["rejected_overlong"], m["clipped_at_context"]) == (rejected, clipped)
            rec = core.sim.records(0)
            assert (rec.prompt_tokens[cut], rec.output_tokens[cut]) == (4000, 96)
            if overlong == "clip":
                assert (rec.prompt_tokens[5], rec.output_tokens[5]) == (4095, 1)
            assert (rec.prompt_tokens + rec.output_tokens <= 4096).all()


def test_toml_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('description = "x"\n[cluster]\nprofile = "llama2-7b-a100"\nnum_instances = 3\n'
                    'chunked_prefill = true\n[workload]\nmix = "paper-mix"\nrate_per_s = 12.5\nnum_requests = 40\n')
    s = S.load_scenario(str(path))
    assert s.name == "mine" and s.instances == ("llama2-7b-a100",) * 3 and s.chunked_prefill
    assert s.offered_rate() == 12.5 and len(s.make_workload(0)) == 40


@pytest.mark.parametrize("text, message", [
    ('[cluster]\nprofile = "llama2-7b-v100"\nspeed = 3\n[workload]\nrate_per_s = 1\n', r"unknown setting.*speed"),
    ('[cluster]\nprofile = "no-such-gpu"\n[workload]\nrate_per_s = 1\n', r"unknown profile 'no-such-gpu'"),
    ('[workload]\nrate_per_s = 1\nload = 0.5\n', r"exactly one of workload.rate_per_s or workload.load"),
    ('[workload]\nrate_per_s = -1\n', r"rate_per_s must be a positive"),
    ('[workload]\nmix = "nope"\nrate_per_s = 1\n', r"unknown mix 'nope'"),
    ('[workload]\ntrace = "missing.csv"\nrate_per_s = 1\n', r"neither a built-in trace"),
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
    from llm_routing_env import simulator
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
    # the code version: a changed simulator source gives another key
    changed = tmp_path / "simulator.py"
    changed.write_bytes(open(simulator.__file__, "rb").read() + b"# changed\n")
    S._code_version.cache_clear()
    monkeypatch.setattr(simulator, "__file__", str(changed))
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
