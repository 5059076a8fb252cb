"""The evaluator (agents/evaluation.py) and its CLI (evaluate.py)."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents import evaluation as E
from agents import reporting
from agents.baselines import Router
from llm_routing_env.config import EnvConfig
from llm_routing_env.core import RoutingCore

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("evaluate_cli", ROOT / "evaluate.py")
cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cli)
SMALL = ["--scenario", "paper-v100", "--num-requests", "20", "--no-progress", "--workers", "1"]
JSON_KEYS = {"policy", "mean_e2e_s", "p50_e2e_s", "p90_e2e_s", "p99_e2e_s", "mean_ttft_s", "p99_ttft_s",
             "mean_tpot_s", "mean_router_wait_s", "preemptions", "completed", "arrived", "improvement_vs_rr_pct",
             "improvement_ci95_pct"}


@pytest.fixture(scope="module")
def tick_model(tmp_path_factory):
    """A MaskablePPO router for 2 instances, rich observation, tick mode, 500 steps, with its card."""
    import torch
    from sb3_contrib import MaskablePPO

    from llm_routing_env.sb3 import make_sb3_vec_env

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("models")
    venv = make_sb3_vec_env(num_envs=1, scenario="paper-v100", num_instances=2, num_requests=20, mode="tick",
                            obs="rich")
    model = MaskablePPO("MlpPolicy", venv, seed=0, device="cpu", n_steps=128, batch_size=64, n_epochs=1,
                        policy_kwargs={"net_arch": [16]})
    model.learn(500)
    path = out / "tiny-tick.zip"
    model.save(path)
    card = {"algo": "maskable-ppo", "obs": "rich", "obs_layout": 2, "mode": "tick", "scenario": "paper-v100", "num_instances": 2,
            "env": {"num_instances": 2, "num_requests": 20, "reward": "latency"}}
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_cli_outputs_and_common_random_numbers(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = cli.main([*SMALL, "--policies", "lor,lwl,oracle-lwl", "--episodes", "3", "--seed", "4", "--json", str(out),
                   "--csv", str(tmp_path / "r.csv"), "--requests-csv", str(tmp_path / "q.csv")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "rr (ref)" in printed and "clairvoyant oracles" in printed and "wall time" in printed
    doc = json.loads(out.read_text())
    assert doc["scenario"] == "paper-v100*" and doc["episodes"] == 3 and doc["seed"] == 4
    assert [r["policy"] for r in doc["results"]] == ["rr", "lor", "lwl", "oracle-lwl"]  # rr added as reference
    for r in doc["results"]:
        assert JSON_KEYS <= set(r)
        assert r["completed"] == r["arrived"] == 60
        assert r["episodes"] == 3 and len(r["per_episode"]["mean_e2e_s"]) == 3
    rr = doc["results"][0]
    assert rr["reference"] and rr["improvement_vs_rr_pct"] == 0.0
    assert [r["clairvoyant"] for r in doc["results"]] == [False, False, False, True]
    assert len(read_csv(tmp_path / "r.csv")) == 4

    # common random numbers: every policy saw the same requests, those of env seed SEED + i
    rows = read_csv(tmp_path / "q.csv")
    assert len(rows) == 4 * 3 * 20
    by = {}
    for row in rows:
        by.setdefault((row["policy"], int(row["episode"])), []).append(row)
    core = RoutingCore(EnvConfig.from_kwargs("paper-v100", num_requests=20), num_envs=3)
    core.reset(seeds=[4, 5, 6])
    for episode in range(3):
        ref = [(r["arrival_s"], r["prompt_tokens"], r["output_tokens"]) for r in by[("rr", episode)]]
        for policy in ("lor", "lwl", "oracle-lwl"):
            assert [(r["arrival_s"], r["prompt_tokens"], r["output_tokens"]) for r in by[(policy, episode)]] == ref
        assert np.allclose([float(a) for a, _, _ in ref], core.arrival[episode, :20], atol=1e-6)
        assert [int(p) for _, p, _ in ref] == core.prompt[episode, :20].tolist()
        assert {r["instance"] for r in by[("rr", episode)]} == {"0", "1", "2", "3"}


def test_statistics():
    m, h = E.mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and h == pytest.approx(4.302652729911275 * 1.0 / np.sqrt(3))
    assert np.isnan(E.mean_ci([5.0])[1])


def test_paired_improvement_by_the_delta_method():
    """By hand: rr = 10, 20, 30 and p = 9, 19, 26 (same episodes). Means 20 and 18, R = 0.9, so
    Δ = 10 %. z_i = p_i - R rr_i = 0, 1, -1: sd 1, and the half-width is
    100 * t(0.975, 2) * 1 / (sqrt(3) * 20) = 12.42 %. (Treating the round-robin mean as a constant,
    the differences 1, 1, 4 would give 100 * 4.303 * sqrt(3) / (sqrt(3) * 20) = 21.5 %.)"""
    imp, half = E.paired_improvement([10.0, 20.0, 30.0], [9.0, 19.0, 26.0])
    assert imp == pytest.approx(10.0, abs=1e-12)
    assert half == pytest.approx(100 * 4.302652729749464 / (np.sqrt(3) * 20), rel=1e-9)  # t(0.975, 2)
    assert half == pytest.approx(12.4207, abs=1e-4)
    # a policy proportional to round-robin in every episode: the ratio is exact, no interval
    imp, half = E.paired_improvement([10.0, 20.0, 30.0], [9.0, 18.0, 27.0])
    assert imp == pytest.approx(10.0) and half == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="one value per episode"):
        E.paired_improvement([1.0, 2.0], [1.0])


def test_load_sweep_plots_and_progress(tmp_path):
    results = E.evaluate(["rr", "lot"], "paper-v100", episodes=2, seed=0, loads=[0.6, 1.0], num_requests=20,
                         collect_requests=True)
    assert [(r["policy"], r["load"]) for r in results] == [("rr", 0.6), ("lot", 0.6), ("rr", 1.0), ("lot", 1.0)]
    assert results[2]["rate_per_s"] == pytest.approx(results[0]["rate_per_s"] / 0.6)
    written = {p.name for p in reporting.make_plots(results, tmp_path / "plots")}
    assert written == {"e2e_cdf_load0.6.png", "ttft_over_time_load0.6.png", "e2e_cdf_load1.png",
                       "ttft_over_time_load1.png", "improvement_vs_load.png"}
    assert "load 0.6" in reporting.format_table(results)


def test_workers_give_identical_results():
    kw = dict(episodes=3, seed=2, num_requests=20)
    one = E.evaluate(["rr", "random", "p2c", "max-capacity"], "paper-v100", workers=1, **kw)
    two = E.evaluate(["rr", "random", "p2c", "max-capacity"], "paper-v100", workers=2, **kw)
    for a, b in zip(one, two):
        assert a["per_episode"] == b["per_episode"], a["policy"]


def test_trace_replay_with_cluster_overrides(tmp_path):
    trace = tmp_path / "trace.csv"
    rng = np.random.default_rng(0)
    arrivals = np.cumsum(rng.exponential(0.1, 60))
    with trace.open("w") as f:
        f.write("arrival_s,prompt_tokens,output_tokens\n")
        for t in arrivals:
            f.write(f"{t:.4f},{int(rng.integers(10, 400))},{int(rng.integers(1, 300))}\n")
    s = E.build_scenario(None, trace=str(trace), instances=2, num_requests=30)
    assert s.num_instances == 2 and s.trace == str(trace) and s.mix is None
    assert s.rate_per_s is None and s.load is None  # the trace's own times
    results = E.evaluate(["rr", "lor"], s, episodes=2, seed=0)
    assert all(r["arrived"] == 60 for r in results)
    fast = E.evaluate(["lor"], None, trace=str(trace), rate=40.0, instances=2, num_requests=30, episodes=1)
    assert fast[0]["rate_per_s"] == 40.0 and fast[0]["scenario"] == "trace:trace"
    with pytest.raises(ValueError, match="no such file"):
        E.build_scenario("paper-v100", trace=str(tmp_path / "nope.csv"))


def test_learned_agent_runs_in_its_own_mode(tick_model, tmp_path, monkeypatch):
    monkeypatch.setattr(E, "IDLE_HOLD_GUARD_S", 2.0)  # the untrained agent may hold forever: cut it off sooner
    out = tmp_path / "r.json"
    rc = cli.main([*SMALL, "--instances", "2", "--policies", f"rr,{tick_model}", "--episodes", "2",
                   "--json", str(out)])
    assert rc == 0
    res = {r["policy"]: r for r in json.loads(out.read_text())["results"]}
    assert (res["rr"]["mode"], res["tiny-tick"]["mode"], res["tiny-tick"]["obs"]) == ("arrival", "tick", "rich")
    tiny = res["tiny-tick"]
    assert tiny["kind"] == "learned" and tiny["arrived"] == 40
    # an episode is truncated exactly when it left requests unfinished, and then Δ is n/a
    per = tiny["per_episode"]
    unfinished = sum(c < a for c, a in zip(per["completed"], per["arrived"]))
    assert tiny["truncated_episodes"] == unfinished and tiny["completed"] == sum(per["completed"])
    assert (tiny["improvement_vs_rr_pct"] is None) == (unfinished > 0)


def test_model_card_evaluation(tick_model, monkeypatch):
    monkeypatch.setattr(E, "IDLE_HOLD_GUARD_S", 2.0)
    card = json.loads(tick_model.with_suffix(".json").read_text())
    ev = E.model_card_evaluation(str(tick_model), card, episodes=2, heuristics=["rr", "lor"], workers=1)
    assert ev["scenario"] == "paper-v100*" and ev["episodes"] == 2 and ev["seed"] == E.CARD_SEED
    assert ev["model"]["mode"] == "tick"
    # the best heuristic is the one of the two with the lower mean E2E on the same episodes
    alone = E.evaluate(["rr", "lor"], "paper-v100", episodes=2, seed=E.CARD_SEED, instances=2, num_requests=20)
    assert [r["truncated_episodes"] for r in alone] == [0, 0]
    best = min(alone, key=lambda r: r["mean_e2e_s"])
    assert ev["best_heuristic"]["policy"] == best["policy"]
    assert ev["best_heuristic"]["mean_e2e_s"] == best["mean_e2e_s"]
    assert ev["training_seeds"]["known"] is False  # the fixture's card records no training seeds


class HoldForever(Router):
    """Holds every request (tick mode): every episode is cut off with nothing completed."""

    name = "hold-forever"
    modes = ("tick",)
    source = "test"

    def _choose(self, view, valid, go):
        return np.full(valid.shape[0], -1, dtype=np.int64)


def test_truncated_episodes_are_counted_and_delta_is_not_reported(monkeypatch):
    monkeypatch.setattr(E, "IDLE_HOLD_GUARD_S", 2.0)
    monkeypatch.setitem(E.ROUTERS, "hold-forever", HoldForever)
    results = E.evaluate(["rr", "hold-forever"], "paper-v100", episodes=2, seed=0, mode="tick", num_requests=20)
    rr, hold = results
    assert (rr["truncated_episodes"], rr["completed"], rr["improvement_note"]) == (0, 40, None)
    assert (hold["truncated_episodes"], hold["completed"], hold["arrived"]) == (2, 0, 40)
    assert np.isnan(hold["improvement_vs_rr_pct"]) and np.isnan(hold["improvement_ci95_pct"])
    assert hold["improvement_note"] == "n/a: hold-forever has 2 truncated episode(s)"
    table = reporting.format_table(results)
    row = next(line for line in table.splitlines() if line.startswith("hold-forever"))
    assert row.split()[-2:] == ["2/2", "n/a"]
    assert "2 of 2 episodes truncated" in table


def test_jsq_is_the_lot_row():
    results = E.evaluate(["lot", "jsq"], "paper-v100", episodes=1, seed=0, num_requests=20)
    assert [r["policy"] for r in results] == ["rr", "lot"]
    assert [r["policy"] for r in E.evaluate(["jsq"], "paper-v100", episodes=1, seed=0, num_requests=20)] == ["rr", "lot"]


def test_training_seed_overlap_is_warned_and_flagged(tick_model, tmp_path, capsys, monkeypatch):
    from llm_routing_env.seeds import TRAINING, VALIDATION, seeds_record

    monkeypatch.setattr(E, "IDLE_HOLD_GUARD_S", 2.0)
    card = json.loads(tick_model.with_suffix(".json").read_text())
    carded = tmp_path / "carded.zip"
    carded.write_bytes(tick_model.read_bytes())
    run = [*SMALL, "--instances", "2", "--policies", f"rr,{carded}", "--episodes", "2", "--seed", "3",
           "--json", str(tmp_path / "r.json")]

    def evaluate_with(seeds):
        carded.with_suffix(".json").write_text(json.dumps({**card, "seeds": seeds} if seeds else card))
        rc = cli.main(run)
        err = capsys.readouterr().err
        doc = json.loads((tmp_path / "r.json").read_text())
        return rc, err, next(r for r in doc["results"] if r["policy"] == "carded")

    # trained on its own streams: nothing to say
    rc, err, r = evaluate_with({"training": seeds_record(TRAINING, 0, 4), "validation": seeds_record(VALIDATION, 0, 4)})
    assert rc == 0 and err == "" and r["training_seeds"]["overlap"] is False
    # a card whose training env seeds 0-3 include the evaluated 3 and 4: a warning and the flag
    rc, err, r = evaluate_with({"training": {"stream": "custom", "env_seeds": [0, 4]}})
    assert rc == 0 and r["training_seeds"]["overlap"] is True
    assert "evaluate.py: warning:" in err and "1 of its training env seeds [0, 4)" in err
    # an old card: unknown, said so, not a crash
    rc, err, r = evaluate_with(None)
    assert rc == 0 and "training seeds unknown" in err
    assert r["training_seeds"] == {"known": False, "overlap": None, "message": r["training_seeds"]["message"]}
    # a malformed field: an error before any simulation
    rc, err, _ = evaluate_with({"training": {"env_seeds": "zero to four"}})
    assert rc == 2 and "seeds.training" in err


def test_seed_outside_the_evaluation_stream_is_refused(capsys):
    rc = cli.main([*SMALL, "--policies", "rr", "--episodes", "2", "--seed", "-1"])
    assert rc == 2 and "evaluation seed must be a non-negative integer" in capsys.readouterr().err
    with pytest.raises(ValueError, match="past the end of the evaluation stream"):
        E.evaluate(["rr"], "paper-v100", episodes=2, seed=2**32 - 1, num_requests=20)


def _no_simulation(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a simulation started")

    monkeypatch.setattr(E, "run_episodes", boom)
    monkeypatch.setattr(RoutingCore, "step", boom)


def test_cli_errors_exit_2_before_simulating(monkeypatch, capsys, tmp_path, tick_model):
    _no_simulation(monkeypatch)
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"PK\x03\x04 definitely not a model")
    cases = [
        ("rr,nope", "unknown policy 'nope'"),
        (f"rr,{tmp_path / 'missing.zip'}", "no such model file"),
        (f"rr,{corrupt}", "corrupt"),
        (f"lor,{tick_model}", "scenario has 4 instances"),  # trained for 2 instances
    ]
    for policies, message in cases:
        rc = cli.main([*SMALL, "--policies", policies, "--episodes", "2"])
        err = capsys.readouterr().err
        assert rc == 2, policies
        assert "evaluate.py: error:" in err and message in err, err
    with pytest.raises(SystemExit) as e:
        cli.main(["--scenario", "paper-v100", "--policies", "rr", "--rate", "5", "--load", "0.5"])
    assert e.value.code == 2


def test_cli_process_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--scenario", "paper-v100", "--policies",
                           f"rr,{tmp_path / 'x.zip'}", "--episodes", "1"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 2 and "no such model file" in proc.stderr and proc.stdout == ""


def test_a_learned_agent_with_a_true_length_predictor_is_reported_with_the_oracles(tmp_path):
    """An agent whose card runs it with the oracle or noisy predictor (both read true output
    lengths) is clairvoyant: the table puts it in the oracles' block, not in the main one."""
    import json
    import shutil

    for predictor in ("noisy", "oracle"):
        model = tmp_path / f"dqn-{predictor}.zip"
        shutil.copy(ROOT / "models" / "dqn-guided.zip", model)
        card = json.loads((ROOT / "models" / "dqn-guided.json").read_text())
        card["env"] = dict(card.get("env") or {}, predictor=predictor)
        model.with_suffix(".json").write_text(json.dumps(card))
        results = E.evaluate(["rr", "lot", str(model)], "paper-v100", episodes=1, seed=0, num_requests=20)
        by_label = {r["label"]: r for r in results}
        assert by_label[str(model)]["clairvoyant"] and not by_label["lot"]["clairvoyant"]
        main, oracles = reporting.format_table(results).split("clairvoyant oracles")[:2]
        assert model.stem not in main and f"{model.stem} [arrival]" in oracles
    card["env"]["predictor"] = "psychic"
    model.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(E.PolicyError, match="unknown predictor 'psychic'"):
        E.resolve_policies([str(model)], 4)


def test_the_scheduler_is_chosen_on_the_command_line(capsys, tmp_path):
    s = E.build_scenario("paper-v100", scheduler="vllm-v1", num_requests=20)
    assert s.scheduler == "vllm-v1" and s.cluster_config().scheduler.v1
    v0, v1 = (E.evaluate(["rr"], "paper-v100", episodes=1, seed=0, num_requests=20, scheduler=name)[0]
              for name in ("vllm-v0", "vllm-v1"))
    assert v0["arrived"] == v1["arrived"] == 20
    assert v0["mean_e2e_s"] != v1["mean_e2e_s"]  # another engine: other timings
    rc = cli.main([*SMALL, "--policies", "rr", "--episodes", "1", "--scheduler", "vllm-v1"])
    assert rc == 0 and "rr " in capsys.readouterr().out
    rc = cli.main([*SMALL, "--policies", "rr", "--episodes", "1", "--scheduler", "vllm-v1", "--chunked-prefill"])
    assert rc == 2 and "chunked_prefill is a vllm-v0 option" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main([*SMALL, "--policies", "rr", "--scheduler", "vllm-v2"])
    assert e.value.code == 2


def test_tick_only_routers_run_in_tick_mode_and_the_table_says_so():
    results = E.evaluate(["rr", "late-binding", "kv-admission"], "paper-v100", episodes=1, seed=0, num_requests=20)
    assert {r["policy"]: r["mode"] for r in results} == {"rr": "arrival", "late-binding": "tick", "kv-admission": "tick"}
    table = reporting.format_table(results)
    assert "late-binding [tick]" in table and "kv-admission [tick]" in table and "rr (ref) [" not in table
    assert "[tick] = decides every 20 ms tick and may hold a request at the router" in table


def test_prefix_cache_metrics_in_the_json_and_the_table(tmp_path, capsys):
    """(issue #13) One instance under vLLM v1, requests 100 s apart (each alone on the instance), each a
    64-token prompt declaring the same 4 prefix blocks. The first of an episode computes its 64 tokens;
    each later one hits 3 blocks (the cap: floor((64 - 1) / 16)) and computes 16: over 5 requests
    hits 4 x 48 = 192 of 192 + 128 looked-up tokens (hit rate 0.6), 128 prefill tokens computed."""
    trace = tmp_path / "shared.csv"
    with trace.open("w") as f:
        f.write("arrival_s,prompt_tokens,output_tokens,prefix_blocks\n")
        for i in range(20):
            f.write(f"{100.0 * i:.1f},64,4,1 2 3 4\n")
    out = tmp_path / "r.json"
    rc = cli.main(["--trace", str(trace), "--instances", "1", "--num-requests", "5", "--scheduler", "vllm-v1",
                   "--policies", "lor", "--episodes", "2", "--no-progress", "--workers", "1", "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    header = next(line for line in printed.splitlines() if line.startswith("policy"))
    assert "hit rate" in header and "TTFT p99" in header
    for r in json.loads(out.read_text())["results"]:
        assert r["prefixes"] is True
        assert r["prefix_hit_rate"] == pytest.approx(0.6) and r["per_episode"]["prefix_hit_rate"] == [0.6, 0.6]
        assert r["prefill_tokens_computed"] == 128
        assert r["p50_ttft_s"] <= r["p90_ttft_s"] <= r["p99_ttft_s"]
        # the later requests skip 48 of their 64 prefill tokens: their TTFT is below the first's
        assert r["p50_ttft_s"] < r["p99_ttft_s"]
    # caching off: the same requests compute every prompt token
    off = E.evaluate(["rr"], E.build_scenario(None, trace=str(trace), instances=1, num_requests=5,
                                              scheduler="vllm-v0"), episodes=1, seed=0)[0]
    assert off["prefixes"] is True and off["prefix_hit_rate"] == 0.0 and off["prefill_tokens_computed"] == 5 * 64


def test_the_table_of_a_scenario_without_prefixes_is_unchanged():
    results = E.evaluate(["rr"], "paper-v100", episodes=1, seed=0, num_requests=20)
    assert results[0]["prefixes"] is False and results[0]["prefix_hit_rate"] == 0.0
    assert results[0]["prefill_tokens_computed"] > 0 and "p50_ttft_s" in results[0] and "p90_ttft_s" in results[0]
    table = reporting.format_table(results)
    assert "hit rate" not in table
    header = next(line for line in table.splitlines() if line.startswith("policy"))
    assert header.split() == ["policy", "E2E", "mean", "E2E", "p50", "E2E", "p90", "E2E", "p99", "TTFT", "mean",
                              "TTFT", "p99", "TPOT", "mean", "router", "wait", "preempt", "out", "tok/s",
                              "truncated", "Δ", "E2E", "vs", "RR", "%"]


def test_ttft_improvement_and_the_cache_gains_summary(tmp_path, capsys):
    results = E.evaluate(["rr", "lor"], "paper-v100", episodes=2, seed=0, num_requests=20)
    rr, lor = results
    assert rr["ttft_improvement_vs_rr_pct"] == 0.0
    expected, half = E.paired_improvement(rr["per_episode"]["mean_ttft_s"], lor["per_episode"]["mean_ttft_s"])
    assert lor["ttft_improvement_vs_rr_pct"] == expected and lor["ttft_improvement_ci95_pct"] == half
    path = tmp_path / "r.json"
    reporting.write_json(results, path, scenario="paper-v100", episodes=2, seed=0)
    spec = importlib.util.spec_from_file_location("cache_gains", ROOT / "tools" / "cache_gains.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main([str(path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| scenario | policy | hit rate %") and len(table) == 4
    assert table[3].startswith(f"| {lor['scenario']} | lor | 0.0 | {lor['mean_ttft_s']:.3f} ± ")
    assert f"| {lor['improvement_vs_rr_pct']:.1f} ± {lor['improvement_ci95_pct']:.1f} |" in table[3]
    old = json.loads(path.read_text())
    for r in old["results"]:
        del r["prefix_hit_rate"]
    path.write_text(json.dumps(old))
    with pytest.raises(ValueError, match="lack prefix_hit_rate .made before the cache metrics"):
        tool.main([str(path)])
