"""Requests beyond the model's context (issue #11 §4): refused or clipped, counted exactly in the
env's info, the evaluation's results, its table, JSON, CSV and requests CSV, whatever the policy."""

import dataclasses
import json

import numpy as np
import pytest

from llm_routing_env import scenarios as S


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_ROUTING_ENV_CACHE", str(tmp_path / "cache"))


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


def test_overlong_counts_in_the_evaluation_for_every_policy(monkeypatch, tmp_path):
    from agents import evaluation as E
    from agents import reporting
    from agents.baselines import ROUTERS

    _with_two_overlong_requests(monkeypatch)
    base = S.load_scenario("paper-v100").with_overrides(num_requests=40, rate_per_s=5.0)
    policies = [name for name in ROUTERS if name != "oracle-lookahead"]  # (the slow one: same counts by design)
    episodes = 2
    for overlong, served, rejected, clipped in (("reject", 39, 1, 1), ("clip", 40, 0, 2)):
        results = E.evaluate(policies, base, episodes=episodes, seed=0, workers=1, collect_requests=True,
                             overlong=overlong)
        assert {r["policy"] for r in results} >= set(policies)
        for r in results:
            assert (r["overlong"], r["max_model_len"]) == (overlong, 4096)
            assert (r["arrived"], r["completed"]) == (served * episodes, served * episodes), r["policy"]
            assert (r["rejected_overlong"], r["clipped_at_context"]) == (rejected * episodes, clipped * episodes)
        table = reporting.format_table(results)
        assert (f"requests beyond the context (max_model_len 4096, overlong={overlong}), over 2 episodes: "
                f"{rejected * episodes} rejected (never served, not in the latencies), "
                f"{clipped * episodes} clipped at the context") in table
        reporting.write_json(results, tmp_path / "r.json", scenario=base.name, episodes=episodes, seed=0)
        doc = json.loads((tmp_path / "r.json").read_text())
        assert all(r["rejected_overlong"] == rejected * episodes for r in doc["results"])
        reporting.write_csv(results, tmp_path / "r.csv")
        assert "rejected_overlong,clipped_at_context" in (tmp_path / "r.csv").read_text().splitlines()[0]
        rows = reporting.write_requests_csv(results[:1], tmp_path / "q.csv")
        assert rows == 40 * episodes  # every request of the stream, refused ones included
        lines = (tmp_path / "q.csv").read_text().splitlines()
        head = lines[0].split(",")
        body = [dict(zip(head, line.split(","))) for line in lines[1:]]
        refused = [b for b in body if b["rejected_overlong"] == "1"]
        assert len(refused) == rejected * episodes
        assert all(b["request_id"] == "5" and b["prompt_tokens"] == "5000" and b["completion_s"] == "" for b in refused)
        cut = [b for b in body if b["clipped_at_context"] == "1"]
        assert len(cut) == clipped * episodes and all(b["completion_s"] != "" for b in cut)
        assert sorted({b["request_id"] for b in body if b["episode"] == "0"}, key=int) == [str(i) for i in range(40)]


def test_overlong_error_names_the_request():
    s = S.load_scenario("azure-code").with_overrides(num_requests=50, rate_per_s=5.0, overlong="error")
    with pytest.raises(ValueError, match=r"request \d+ .*prompt_tokens=\d+ \+ output_tokens=\d+ = \d+ > max_model_len=4096"):
        s.make_workload(0)
