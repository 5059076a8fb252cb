"""Scenarios: shipped names, TOML files, errors, the saturation tool and its cache."""

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
    assert len(w) == 300 and w.mean_rate_per_s == pytest.approx(10.0, rel=1e-6)
    assert (w.prompt_tokens + w.output_tokens <= s.max_model_len).all()


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
