"""Replay real vLLM runs through the simulator and compare per-request TTFT and E2E.

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python tools/crosscheck_real.py --data PATH [--llmservingsim PATH]
        [--scheduler vllm-v1|vllm-v0] [--out FILE]

``PATH`` is a checkout of github.com/inference-sim/training at its first commit c4f03409 (it carries
no license: read it where you have it, ship none of it). Its ``replay_data/<experiment>.json`` hold
each request's arrival time and token counts, ``<experiment>_ground_truth.json`` the E2E latency
and TTFT the inference-perf client measured against a vLLM V1 server (Llama-2-7B on one H100,
Llama-2-70B on 4 H100s; ``max_num_seqs`` 128, ``max_num_batched_tokens`` 2048; the KV blocks
the server reported are in the file). Each run has two stages of constant-rate Poisson load
(``default_args/<experiment>/profile.yaml``).

What is replayed: every request without a client error, at its arrival time, on one instance of
the matching profile (``llama2-7b-h100`` / ``llama2-70b-h100-tp4``) with the server's KV blocks,
128 sequences and a 2,048-token budget, under the simulator's ``vllm-v1`` scheduler (the servers'
engine; ``--scheduler vllm-v0`` runs v0's chunked prefill instead, which reserves a prompt's KV at
admission and keeps a 1% watermark). Output lengths: the runs set
``ignore_eos``, so every request generates its ``max_tokens``; for some requests the client's
recount (``output_tokens``) is far shorter, yet their E2E equals the full-length ones': a recorded
count below half the run's median is replaced by the median (how many is printed). Runs where
more than 10% of the requests failed (the ``reasoning`` runs: overloaded, most requests time out)
are skipped.

``--llmservingsim PATH`` (a checkout of github.com/casys-kaist/LLMServingSim, MIT) adds its
validation run ``bench/examples/RTX4090/Llama-3.1-8B/vllm``: 300 ShareGPT requests at 10 req/s
against real vLLM 0.19 on one RTX 4090 (``max_num_seqs`` 256, ``max_num_batched_tokens`` 2048, the
KV blocks in ``meta.json``), TTFT and E2E measured from the engine's queueing time; replayed on
``llama3.1-8b-rtx4090`` (fitted to LLMServingSim's own profiles of that GPU) the same way.

Not modelled, so expected gaps: prefix caching (the workloads share system prompts; the README
says caching was likely on, which shortens real prefills), CPU KV offload (configured), the HTTP /
tokenizer / detokenizer path and vLLM's CPU overheads (in the client's TTFT and E2E, not in our
iteration times), and any gap between the profiles (fitted to Vidur's and SplitwiseSim's
measurements) and this server's GPUs and vLLM version.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llm_routing_env.cluster import COMPLETED, ClusterConfig, SchedulerConfig  # noqa: E402
from llm_routing_env.profiles import get_profile  # noqa: E402
from llm_routing_env.sim import replay_round_robin  # noqa: E402

PROFILE_FOR_MODEL = {"llama-2-7b": "llama2-7b-h100", "llama-2-70b": "llama2-70b-h100-tp4",
                     "llama-3.1-8b-rtx4090": "llama3.1-8b-rtx4090"}
MAX_ERROR_FRACTION = 0.10


def load_run(data: Path, experiment: str) -> dict:
    """One experiment's requests (without client errors) and their measured latencies."""
    spec = json.loads((data / "replay_data" / f"{experiment}.json").read_text())
    truth = {r["index"]: r for r in json.loads((data / "replay_data" / f"{experiment}_ground_truth.json").read_text())}
    requests = spec["requests"]
    ok = [r for r in requests if not r["has_error"] and r["index"] in truth and not truth[r["index"]]["has_error"]]
    output = np.array([r["output_tokens"] for r in ok])
    short = output < np.median(output) / 2
    output = np.where(short, int(np.median(output)), output)
    return {
        "experiment": experiment, "model": spec["model_short"], "config": spec["config"],
        "error_fraction": 1 - len(ok) / len(requests), "num_requests": len(requests),
        "arrival_s": np.array([r["arrival_time_us"] for r in ok]) / 1e6,
        "prompt_tokens": np.array([r["input_tokens"] for r in ok]), "output_tokens": output,
        "short_outputs_replaced": int(short.sum()),
        "e2e_s": np.array([truth[r["index"]]["e2e_s"] for r in ok]),
        "ttft_s": np.array([truth[r["index"]]["ttft_s"] for r in ok]),
    }


def load_llmservingsim_run(repo: Path) -> dict:
    """LLMServingSim's RTX 4090 validation run: times from the engine's queueing of each request."""
    base = repo / "bench" / "examples" / "RTX4090" / "Llama-3.1-8B" / "vllm"
    if not (base / "requests.jsonl").is_file():
        raise SystemExit(f"no {base / 'requests.jsonl'}: pass --llmservingsim, a checkout of casys-kaist/LLMServingSim")
    meta = json.loads((base / "meta.json").read_text())
    rows = [json.loads(line) for line in (base / "requests.jsonl").read_text().splitlines() if line.strip()]
    queued = np.array([r["queued_ts"] for r in rows])
    first, last = np.array([r["first_token_ts"] for r in rows]), np.array([r["last_token_ts"] for r in rows])
    kw = meta["engine_kwargs"]
    return {
        "experiment": f"LLMServingSim RTX4090/Llama-3.1-8B (vLLM {meta['vllm_version']})", "model": "llama-3.1-8b-rtx4090",
        "config": {"kv_blocks_total_gpu": meta["kv_cache"]["num_gpu_blocks"], "max_num_seqs": kw["max_num_seqs"],
                   "max_num_batched_tokens": kw["max_num_batched_tokens"]},
        "error_fraction": 0.0, "num_requests": len(rows), "arrival_s": queued - queued.min(),
        "prompt_tokens": np.array([r["input_toks"] for r in rows]), "output_tokens": np.array([r["output_toks"] for r in rows]),
        "short_outputs_replaced": 0, "e2e_s": last - queued, "ttft_s": first - queued,
    }


def stage_bounds(data: Path, experiment: str) -> list[tuple[float, float, float]]:
    """(start_s, end_s, rate) of each constant-load stage, from the run's profile.yaml (JSON text)."""
    profile = json.loads((data / "default_args" / experiment / "profile.yaml").read_text())
    start, out = 0.0, []
    for stage in profile["load"]["stages"]:
        out.append((start, start + stage["duration"], float(stage["rate"])))
        start += stage["duration"]
    return out


def simulate(run: dict, scheduler: str) -> tuple[np.ndarray, np.ndarray]:
    """Simulated (E2E, TTFT) per request, in the order of ``run``'s requests."""
    base = get_profile(PROFILE_FOR_MODEL[run["model"]])
    cfg = run["config"]
    profile = dataclasses.replace(base, name=f"{base.name}-as-run", kv_capacity_blocks=int(cfg["kv_blocks_total_gpu"]))
    sched = SchedulerConfig(scheduler=scheduler, chunked_prefill=scheduler == "vllm-v0",
                            max_num_seqs=int(cfg["max_num_seqs"]), max_num_batched_tokens=int(cfg["max_num_batched_tokens"]))
    rec = replay_round_robin(ClusterConfig([profile], sched), run["arrival_s"], run["prompt_tokens"], run["output_tokens"])
    assert np.all(rec.status == COMPLETED)
    return rec.completion_s - rec.arrival_s, rec.first_token_s - rec.arrival_s


def stats(x: np.ndarray) -> tuple[float, float, float]:
    return float(np.mean(x)), float(np.median(x)), float(np.percentile(x, 99))


def fmt(values) -> str:
    return "/".join(f"{v:.4f}" if v < 0.1 else f"{v:.3f}" for v in values)


def compare(run: dict, stages, scheduler: str) -> list[str]:
    sim_e2e, sim_ttft = simulate(run, scheduler)
    lines = [f"{run['experiment']}: {scheduler}, profile {PROFILE_FOR_MODEL[run['model']]}, KV {run['config']['kv_blocks_total_gpu']} "
             f"blocks, {len(sim_e2e)} of {run['num_requests']} requests replayed "
             f"({run['short_outputs_replaced']} short output counts replaced by the median "
             f"{int(np.median(run['output_tokens']))})"]
    lines.append(f"  {'stage':<18} {'metric':<5} {'real mean/p50/p99 (s)':<26} {'sim mean/p50/p99 (s)':<26} sim/real - 1 (mean, p50, p99)")
    windows = [(f"{lo:.0f}-{hi:.0f} s @{rate:g}/s", lo, hi) for lo, hi, rate in stages] + [("all", 0.0, np.inf)]
    # time per output token after the first: the iteration speed, without the wait for admission
    decodes = np.maximum(run["output_tokens"] - 1, 1)
    real_tpot, sim_tpot = (run["e2e_s"] - run["ttft_s"]) / decodes, (sim_e2e - sim_ttft) / decodes
    for label, lo, hi in windows:
        m = (run["arrival_s"] >= lo) & (run["arrival_s"] < hi)
        for metric, real, sim in (("E2E", run["e2e_s"], sim_e2e), ("TTFT", run["ttft_s"], sim_ttft),
                                  ("TPOT", real_tpot, sim_tpot)):
            r, s = stats(real[m]), stats(sim[m])
            rel = ", ".join(f"{100 * (b / a - 1):+.1f}%" for a, b in zip(r, s))
            lines.append(f"  {label:<18} {metric:<5} {fmt(r):<26} {fmt(s):<26} {rel}")
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="checkout of github.com/inference-sim/training @ c4f03409")
    ap.add_argument("--llmservingsim", type=Path, default=None,
                    help="checkout of github.com/casys-kaist/LLMServingSim (its RTX 4090 validation run)")
    ap.add_argument("--scheduler", choices=("vllm-v1", "vllm-v0"), default="vllm-v1",
                    help="vllm-v1 (the servers' engine; default) or vllm-v0 with its chunked prefill")
    ap.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = ap.parse_args(argv)
    replay = args.data / "replay_data"
    if not replay.is_dir():
        raise ValueError(f"no replay_data/ under {args.data}: pass --data, a checkout of inference-sim/training")
    experiments = sorted(p.stem for p in replay.glob("*.json") if not p.stem.endswith("_ground_truth"))
    lines = ["Simulator vs real vLLM V1 runs (inference-sim/training @ c4f03409); command:",
             f"  PYTHONPATH=. python tools/crosscheck_real.py --data PATH [--llmservingsim PATH] --scheduler {args.scheduler}", ""]
    for experiment in experiments:
        spec_model = json.loads((replay / f"{experiment}.json").read_text())["model_short"]
        if spec_model not in PROFILE_FOR_MODEL:
            lines.append(f"{experiment}: skipped (no profile for {spec_model})")
            continue
        run = load_run(args.data, experiment)
        if run["error_fraction"] > MAX_ERROR_FRACTION:
            lines.append(f"{experiment}: skipped ({100 * run['error_fraction']:.0f}% of requests failed at the client)")
            continue
        lines += compare(run, stage_bounds(args.data, experiment), args.scheduler)
        lines.append("")
    if args.llmservingsim is not None:
        run = load_llmservingsim_run(args.llmservingsim)
        lines += compare(run, [(0.0, float(run["arrival_s"].max()) + 1e-9, len(run["arrival_s"]) / run["arrival_s"].max())],
                         args.scheduler)
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    from llm_routing_env.cli import entry_point

    raise SystemExit(entry_point()(main)())
