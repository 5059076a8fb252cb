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
