"""Cross-check the simulator against SplitwiseSim on identical request sequences (issue #14 §3).

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python tools/crosscheck_splitwise.py --splitwise PATH --splitwise-python PY
        [--azure CSV] [--requests 20000] [--seed 0] [--out FILE]

``PATH`` is a checkout of github.com/Mutinifni/splitwise-sim (MIT; checked at 8f99e7d), ``PY`` a
Python with its requirements (hydra-core, omegaconf, pandas, scipy, numpy, networkx; the Ray launcher
is not needed). The checkout is copied to a temporary directory and never modified; there we add a
4-GPU A100-80GB server type, a 4-server cluster, a start state (one SplitwiseSim "baseline" instance
per server, ``instance_type: Splitwise``, TP4, ``max_batch_tokens`` 2048, ``max_batch_size`` 512) and
a config without the Ray launcher, and run ``run.py`` with Llama-2-70B, ``performance_model=db``
(its ``data/perf_model.csv``) and its ``round_robin`` scheduler.

Workload: ``--requests`` (prompt, output) pairs drawn with replacement (seeded) from the Azure 2023
conversation trace (``ContextTokens``, ``GeneratedTokens``; rows with ``prompt + output > 4096``, the
profiles' context, or a single output token, which SplitwiseSim cannot represent as a token task,
are left out), Poisson arrivals at two rates: 0.6 and 0.9 of SplitwiseSim's saturation throughput,
measured by running the same requests all at t = 0 (80% of them over the time from the 10th to the 90th
percentile completion: the drain rate with a full backlog). Request ``k`` goes to
instance ``k mod 4`` in both simulators.

Our side: 4 instances, their KV capacity set to what SplitwiseSim's memory model gives (4 x 80 GiB
minus 135 GB of weights, over 2 x 8192 x 80 x 2 bytes per token: Llama-2-70B without GQA, as
SplitwiseSim's ``estimate_kv_cache_size`` computes it), 512 sequences, under three schedulers
(v0 chunked prefill with a 2048-token budget and no watermark, the closest to SplitwiseSim's mixed
batches; v0 without chunking, 4096 tokens, prefill-only iterations; v1, 2048 tokens) and two
latency models: ``llama2-70b-a100-tp4`` (fitted to the measurements of the same table) and
``splitwise-equivalent``, our closed form fitted to SplitwiseSim's own iteration-time function (its
``DatabasePerformanceModel``: per-iteration median time interpolated over ``prompt_size x
batch_size``, decode-only batches on ``token_time`` at x = batch size, mixed batches 1.1 x
``prompt_time``), so that the comparison isolates the scheduling semantics. The report lists the
fit error of the equivalent profile and every scheduling rule that differs (docs/fidelity.md §4).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from crosscheck_real import stats  # noqa: E402  (mean, p50, p99)
from fit_profiles import Table, ape_pct, fit  # noqa: E402

from llm_routing_env.cluster import COMPLETED, ClusterConfig, SchedulerConfig  # noqa: E402
from llm_routing_env.profiles import KV_BLOCK_TOKENS, get_profile, iteration_time_ms  # noqa: E402
from llm_routing_env.sim import replay_round_robin  # noqa: E402
from llm_routing_env.traces import load_azure_trace  # noqa: E402

AZURE_CONV = REPO.parent / "shared" / "data" / "azure_llm_inference_2023" / "AzureLLMInferenceTrace_conv.csv"
NUM_INSTANCES = 4
MAX_MODEL_LEN = 4096
MAX_BATCH_TOKENS = 2048  # SplitwiseSim's default max_batch_tokens (configs/start_state/baseline.yaml)
MAX_BATCH_SIZE = 512  # SplitwiseSim's default max_batch_size
LOADS = (0.6, 0.9)
# SplitwiseSim's memory model (configs/hardware_repo/processors/a100-80gb.yaml, model_repo sizes and
# architectures for llama2-70b, request.py estimate_kv_cache_size): bytes, not GQA-aware.
GPU_MEMORY_BYTES = 85899345920
WEIGHTS_BYTES = 135_000_000_000
KV_BYTES_PER_TOKEN = 2 * 8192 * 80 * 2
SPLITWISE_KV_TOKENS = (NUM_INSTANCES * GPU_MEMORY_BYTES - WEIGHTS_BYTES) // KV_BYTES_PER_TOKEN

# SplitwiseSim runs an event due at its current time at once, so a request arriving at t = 0 would be
# routed while its trace is loaded, before the instances exist; its arrivals are shifted by this much
# (latencies are relative to arrival, so unchanged).
SPLITWISE_START_S = 1.0

SKU_YAML = """_target_: server.Server
name: xcheck-a100x4
tdp: 3250
processors:
  - name: a100-80gb
    count: 4
interconnects: {}
"""
CLUSTER_YAML = f"""power_budget: 1000000
servers:
  - sku: xcheck-a100x4
    count: {NUM_INSTANCES}
  - sku: dgx-h100
    count: 0
interconnects:
  - link: infiniband
    topology: p2p
"""
START_STATE_YAML = f"""state_type: baseline
application_id: 0
instance:
  instance_type: Splitwise
  max_batch_size: {MAX_BATCH_SIZE}
  max_batch_tokens: {MAX_BATCH_TOKENS}
  max_preemptions: 4
  pipeline_parallelism: 1
  tensor_parallelism: 4
"""
CONFIG_YAML = """defaults:
  - cluster: xcheck
  - router: noop
  - arbiter: noop
  - hardware_repo: default
  - model_repo: default
  - orchestrator_repo: default
  - performance_model: db
  - power_model: constant
  - applications: solo
  - trace: test_trace
  - start_state: xcheck
  - _self_
end_time: 1000000
debug: False
seed: 0
output_dir: out
hydra:
  run:
    dir: ${output_dir}
  job:
    chdir: True
"""


# ------------------------------------------------------------------------------------------
# Workloads
# ------------------------------------------------------------------------------------------


def draw_lengths(azure_csv: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(prompt, output) token counts of ``n`` requests drawn from the Azure conversation trace."""
    trace = load_azure_trace(azure_csv)
    prompt, output = np.asarray(trace.prompt_tokens), np.asarray(trace.output_tokens)
    keep = (prompt + output <= MAX_MODEL_LEN) & (output >= 2)
    idx = np.random.default_rng(seed).integers(0, int(keep.sum()), size=n)
    return prompt[keep][idx], output[keep][idx], int((~keep).sum())


def poisson_arrivals(n: int, rate: float, seed: int) -> np.ndarray:
    gaps = np.random.default_rng([seed, 1]).exponential(1.0 / rate, size=n)
    return np.cumsum(gaps) - gaps[0]  # the first request at t = 0


# ------------------------------------------------------------------------------------------
# SplitwiseSim
# ------------------------------------------------------------------------------------------


def prepare_splitwise(checkout: Path, workdir: Path) -> Path:
    if not (checkout / "run.py").is_file() or not (checkout / "data" / "perf_model.csv").is_file():
        raise ValueError(f"{checkout} is not a SplitwiseSim checkout (no run.py / data/perf_model.csv): "
                         "pass --splitwise, a checkout of github.com/Mutinifni/splitwise-sim")
    sim = workdir / "splitwise-sim"
    shutil.copytree(checkout, sim, ignore=shutil.ignore_patterns(".git", "results", "outputs"))
    (sim / "configs" / "hardware_repo" / "skus" / "xcheck-a100x4.yaml").write_text(SKU_YAML)
    (sim / "configs" / "cluster" / "xcheck.yaml").write_text(CLUSTER_YAML)
    (sim / "configs" / "start_state" / "xcheck.yaml").write_text(START_STATE_YAML)
    (sim / "configs" / "xcheck.yaml").write_text(CONFIG_YAML)
    return sim


def run_splitwise(sim: Path, python: str, name: str, arrival_s, prompt, output) -> tuple[np.ndarray, np.ndarray]:
    """SplitwiseSim's (E2E, TTFT) per request, in request order."""
    with (sim / "traces" / f"{name}.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["request_id", "request_type", "application_id", "arrival_timestamp", "batch_size",
                    "prompt_size", "token_size"])
        for k, (t, p, o) in enumerate(zip(arrival_s, prompt, output)):
            w.writerow([k, 2, 0, repr(float(t) + SPLITWISE_START_S), 1, int(p), int(o)])
    out = f"out_{name}"
    cmd = [python, "run.py", "--config-name", "xcheck", f"trace.filename={name}", f"output_dir={out}",
           "applications.0.model_architecture=llama2-70b", "applications.0.model_size=llama2-70b-fp16"]
    done = subprocess.run(cmd, cwd=sim, capture_output=True, text=True)
    detailed = sim / out / "detailed" / "0.csv"
    if done.returncode != 0 or not detailed.is_file():
        raise SystemExit(f"SplitwiseSim failed ({' '.join(cmd)}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    rows = list(csv.DictReader(detailed.open()))
    if len(rows) != len(arrival_s):
        raise SystemExit(f"SplitwiseSim completed {len(rows)} of {len(arrival_s)} requests")
    ids = np.array([int(float(r["request_ids"])) for r in rows])
    e2e, ttft = np.empty(len(rows)), np.empty(len(rows))
    e2e[ids] = [float(r["response_times"]) for r in rows]
    ttft[ids] = [float(r["ttft_times"]) for r in rows]
    return e2e, ttft


def splitwise_iteration_ms(perf_csv: Path, hardware: str = "a100-80gb", tensor_parallel: int = 4):
    """SplitwiseSim's iteration time (ms) as a function of (prefill tokens, decodes) of a batch.

    Mirrors ``performance_model.py`` ``DatabasePerformanceModel`` @ 8f99e7d: medians of
    ``prompt_time`` and ``token_time`` per ``prompt_size * batch_size``, interpolated linearly
    (extrapolated beyond the ends); a decode-only batch of B is ``token_time(B)``, any batch with a
    prompt is ``prompt_time(prompt tokens + decodes)``, times 1.1 when decodes ride along.
    """
    groups: dict[int, tuple[list, list]] = {}
    for r in csv.DictReader(perf_csv.open()):
        if r["model"] == "llama2-70b" and r["hardware"] == hardware and int(r["tensor_parallel"]) == tensor_parallel:
            g = groups.setdefault(int(r["prompt_size"]) * int(r["batch_size"]), ([], []))
            g[0].append(float(r["prompt_time"]))
            g[1].append(float(r["token_time"]))
    x = np.array(sorted(groups), dtype=float)
    prompt_ms = np.array([np.median(groups[k][0]) for k in sorted(groups)])
    token_ms = np.array([np.median(groups[k][1]) for k in sorted(groups)])

    def interp(y, at):
        at = np.asarray(at, dtype=float)
        lo = y[0] + (at - x[0]) * (y[1] - y[0]) / (x[1] - x[0])
        hi = y[-1] + (at - x[-1]) * (y[-1] - y[-2]) / (x[-1] - x[-2])
        return np.where(at < x[0], lo, np.where(at > x[-1], hi, np.interp(at, x, y)))

    def iteration_ms(prefill_tokens, decodes):
        prefill_tokens, decodes = np.asarray(prefill_tokens, dtype=float), np.asarray(decodes, dtype=float)
        with_prompt = interp(prompt_ms, prefill_tokens + decodes) * np.where(decodes > 0, 1.1, 1.0)
        return np.where(prefill_tokens > 0, with_prompt, interp(token_ms, decodes))

    return iteration_ms


def fit_equivalent_profile(f):
    """Our closed form fitted to SplitwiseSim's iteration function ``f`` (splitwise_iteration_ms) on
    the batches a run meets: decode-only batches of 1-64, single prompts of 128-4096 tokens, and one
    prompt with 1-64 decodes. Returns the profile and the fit's MAPE / max APE (%)."""
    rows = []  # (prefill tokens, decodes, kind)
    rows += [(0, b, "decode") for b in range(1, 65)]
    prompts = np.unique(np.geomspace(128, MAX_MODEL_LEN, 40).astype(int))
    rows += [(int(p), 0, "prefill") for p in prompts]
    rows += [(int(p), b, "mixed") for p in prompts[::3] for b in (1, 4, 16, 64)]
    p = np.array([r[0] for r in rows], dtype=float)
    b = np.array([r[1] for r in rows], dtype=float)
    table = Table(ntok=p + b, sum_chunk_sq=p**2, sum_chunk_prior=np.zeros_like(p),
                  sum_decode_context=b * 1000.0, measured_ms=f(p, b), kind=np.array([r[2] for r in rows]))
    coefficients = fit(table, range(0, MAX_MODEL_LEN + 1, 64), balance_kinds=True)
    ape = ape_pct(table, coefficients)
    c0, c1, c2, knee, c3, c4, c5 = coefficients
    base = get_profile("llama2-70b-a100-tp4")
    profile = dataclasses.replace(
        base, name="splitwise-equivalent", c0_ms=c0, c1_ms_per_token=c1, c2_ms_per_token_above_knee=c2,
        knee_tokens=knee, c3_ms_per_chunk_token_sq=c3, c4_ms_per_chunk_prior_token=c4,
        c5_ms_per_decode_context_token=c5, source="fitted to SplitwiseSim's DatabasePerformanceModel",
        fit_mape_pct=float(ape.mean()), fit_max_ape_pct=float(ape.max()))
    per_kind = {k: (float(ape[table.kind == k].mean()), float(ape[table.kind == k].max())) for k in ("decode", "prefill", "mixed")}
    return profile, per_kind


# ------------------------------------------------------------------------------------------
# Our simulator
# ------------------------------------------------------------------------------------------

SCHEDULERS = {
    "v0-chunked": SchedulerConfig(scheduler="vllm-v0", chunked_prefill=True, max_num_seqs=MAX_BATCH_SIZE,
                                  max_num_batched_tokens=MAX_BATCH_TOKENS, watermark_frac=0.0),
    "v0": SchedulerConfig(scheduler="vllm-v0", max_num_seqs=MAX_BATCH_SIZE, max_num_batched_tokens=MAX_MODEL_LEN,
                          watermark_frac=0.0),
    "v1": SchedulerConfig(scheduler="vllm-v1", max_num_seqs=MAX_BATCH_SIZE, max_num_batched_tokens=MAX_BATCH_TOKENS),
}


def run_ours(profile, sched: SchedulerConfig, arrival_s, prompt, output) -> tuple[np.ndarray, np.ndarray, int]:
    """Our (E2E, TTFT) per request and the number of preemptions; request k on instance k mod 4."""
    profile = dataclasses.replace(profile, kv_capacity_blocks=int(SPLITWISE_KV_TOKENS // KV_BLOCK_TOKENS))
    rec = replay_round_robin(ClusterConfig([profile] * NUM_INSTANCES, sched), arrival_s, prompt, output)
    assert np.all(rec.status == COMPLETED)
    return rec.completion_s - rec.arrival_s, rec.first_token_s - rec.arrival_s, int(rec.preemptions.sum())


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------


def gap(ref, ours) -> str:
    return ", ".join(f"{100 * (b / a - 1):+.1f}%" for a, b in zip(stats(ref), stats(ours)))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--splitwise", type=Path, required=True, help="checkout of github.com/Mutinifni/splitwise-sim")
    ap.add_argument("--splitwise-python", required=True, help="a Python with SplitwiseSim's requirements")
    ap.add_argument("--azure", type=Path, default=AZURE_CONV, help="AzureLLMInferenceTrace_conv.csv")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = ap.parse_args(argv)
    if args.requests < 10:
        raise ValueError(f"--requests must be at least 10, got {args.requests}")
    if not args.azure.is_file():
        raise ValueError(f"no Azure conversation trace at {args.azure}: pass --azure")

    prompt, output, dropped = draw_lengths(args.azure, args.requests, args.seed)
    perf_csv = args.splitwise / "data" / "perf_model.csv"
    if not perf_csv.is_file():
        raise ValueError(f"{args.splitwise} is not a SplitwiseSim checkout (no data/perf_model.csv): "
                         "pass --splitwise, a checkout of github.com/Mutinifni/splitwise-sim")
    f = splitwise_iteration_ms(perf_csv)  # read once: fitted here, quoted below
    equivalent, per_kind = fit_equivalent_profile(f)
    lines = ["SplitwiseSim (github.com/Mutinifni/splitwise-sim) vs this simulator, same requests; command:",
             f"  PYTHONPATH=. python tools/crosscheck_splitwise.py --splitwise PATH --splitwise-python PY "
             f"--requests {args.requests} --seed {args.seed}",
             f"Workload: {args.requests} requests, lengths drawn (seed {args.seed}) from {args.azure.name} "
             f"({dropped} rows left out: prompt + output > {MAX_MODEL_LEN} or output < 2); prompt mean "
             f"{prompt.mean():.0f} / p50 {np.median(prompt):.0f}, output mean {output.mean():.0f} / p50 "
             f"{np.median(output):.0f} tokens",
             f"Cluster: {NUM_INSTANCES} x Llama-2-70B on 4 x A100-80GB (TP4), round-robin (request k -> instance k mod "
             f"{NUM_INSTANCES}); KV {SPLITWISE_KV_TOKENS} tokens per instance ({SPLITWISE_KV_TOKENS // KV_BLOCK_TOKENS} "
             f"blocks of {KV_BLOCK_TOKENS}), SplitwiseSim's memory model",
             ""]
    c = equivalent
    lines.append(f"splitwise-equivalent profile: c0 {c.c0_ms} ms, c1 {c.c1_ms_per_token}, c2 {c.c2_ms_per_token_above_knee} "
                 f"above {c.knee_tokens} tokens, c3 {c.c3_ms_per_chunk_token_sq}, c4 {c.c4_ms_per_chunk_prior_token}, "
                 f"c5 {c.c5_ms_per_decode_context_token}; error against SplitwiseSim's iteration function: "
                 + "; ".join(f"{k} MAPE {m:.1f}% (max {x:.1f}%)" for k, (m, x) in per_kind.items()))
    p50 = int(np.median(prompt))
    shipped = get_profile("llama2-70b-a100-tp4")
    for what, p, b, ctx in ((f"one {p50}-token prompt with 16 decodes", p50, 16, 16 * 1100),
                            ("32 decodes at context 1100", 0, 32, 32 * 1100)):
        ms = [float(f(p, b))] + [float(iteration_time_ms(q.coefficients, p + b, p * p, 0, ctx)) for q in (c, shipped)]
        lines.append(f"  iteration of {what}: SplitwiseSim {ms[0]:.1f} ms, splitwise-equivalent {ms[1]:.1f} ms, "
                     f"llama2-70b-a100-tp4 {ms[2]:.1f} ms")
    lines.append("")

    with tempfile.TemporaryDirectory(prefix="xcheck-splitwise-") as tmp:
        sim = prepare_splitwise(args.splitwise, Path(tmp))
        burst = np.zeros(args.requests)
        e2e_burst, _ = run_splitwise(sim, args.splitwise_python, "xcheck_burst", burst, prompt, output)
        # the drain rate with a full backlog: completions between the 10th and 90th percentile (the
        # makespan would be set by the longest requests' decodes, not by throughput)
        t10, t90 = np.percentile(e2e_burst, [10, 90])
        saturation = 0.8 * args.requests / float(t90 - t10)
        lines.append(f"SplitwiseSim saturation throughput: {saturation:.3f} req/s (all {args.requests} requests at t = 0; "
                     f"80% of them complete between {t10:.1f} s and {t90:.1f} s)")
        header = f"  {'simulator':<42} {'E2E mean/p50/p99 (s)':<24} {'TTFT mean/p50/p99 (s)':<24} preempt  gap E2E (mean, p50, p99) | gap TTFT"
        for load in LOADS:
            rate = load * saturation
            arrival = poisson_arrivals(args.requests, rate, args.seed)
            ref_e2e, ref_ttft = run_splitwise(sim, args.splitwise_python, f"xcheck_{int(load * 100)}", arrival, prompt, output)
            lines += ["", f"Load {load} ({rate:.3f} req/s, Poisson, seed {args.seed}):", header]
            fmt = lambda v: "/".join(f"{x:.2f}" for x in stats(v))  # noqa: E731
            lines.append(f"  {'SplitwiseSim (Splitwise instance)':<42} {fmt(ref_e2e):<24} {fmt(ref_ttft):<24} {'-':>7}")
            for prof in (equivalent, get_profile("llama2-70b-a100-tp4")):
                for sname, sched in SCHEDULERS.items():
                    e2e, ttft, pre = run_ours(prof, sched, arrival, prompt, output)
                    label = f"ours {sname}, {prof.name}"
                    lines.append(f"  {label:<42} {fmt(e2e):<24} {fmt(ttft):<24} {pre:>7}  "
                                 f"{gap(ref_e2e, e2e)} | {gap(ref_ttft, ttft)}")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    from llm_routing_env.cli import entry_point

    raise SystemExit(entry_point()(main)())
