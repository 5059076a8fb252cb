"""Hand-computed timings of the reference simulator on tiny cases (docs/simulator.md); those of
vLLM v1's scheduler on both simulators.

Most cases use the profile SIMPLE, whose iteration takes ``10 ms + 1 ms per batched token``
(``c0 = 10``, ``c1 = 1``, every other coefficient 0): a prefill of ``x`` tokens alone lasts
``10 + x`` ms and a decode-only batch of ``n`` requests ``10 + n`` ms. Every expected time below is
derived by hand in the comments; times are compared to 1e-12 relative (they are sums of floats).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from llm_routing_env.cluster import COMPLETED, NOT_DISPATCHED, RUNNING, WAITING, ClusterConfig, SchedulerConfig
from llm_routing_env.profiles import LatencyProfile
from llm_routing_env.sim import ClusterSimulator, ReferenceSimulator


def make_profile(name="simple", *, c0=10.0, c1=1.0, c3=0.0, c4=0.0, c5=0.0, kv_capacity_blocks=100,
                 max_model_len=256) -> LatencyProfile:
    return LatencyProfile(
        name=name, c0_ms=c0, c1_ms_per_token=c1, c2_ms_per_token_above_knee=0.0, knee_tokens=0,
        c3_ms_per_chunk_token_sq=c3, c4_ms_per_chunk_prior_token=c4, c5_ms_per_decode_context_token=c5,
        kv_capacity_blocks=kv_capacity_blocks, max_model_len=max_model_len,
    )


SIMPLE = make_profile()


def make_sim(profile=SIMPLE, num_instances=1, max_requests=8, **scheduler) -> ReferenceSimulator:
    config = ClusterConfig([profile] * num_instances, SchedulerConfig(**scheduler))
    return ReferenceSimulator(config, num_clusters=1, max_requests=max_requests)


def close(x):
    return pytest.approx(x, rel=1e-12, abs=1e-15)


def request(sim: ReferenceSimulator, rid: int) -> dict:
    """One request's record (cluster 0) as a dict of Python scalars."""
    rec = sim.records()
    return {name: getattr(rec, name)[0, rid].item() for name in rec.__dataclass_fields__}


# --------------------------------------------------------------------------------------------
# Timings without chunked prefill (vLLM v0)
# --------------------------------------------------------------------------------------------


def test_lone_request_prefill_then_decodes():
    # c5 = 0.5 ms per decode-context token so that the context of each decode is checked too.
    sim = make_sim(make_profile(c5=0.5))
    sim.dispatch(0, 0, 0, 20, 4, 0.0)
    sim.run_until_idle()
    r = request(sim, 0)
    # Iteration 1 (t=0): prefill of the 20-token prompt alone: 10 + 20 = 30 ms -> first token at 0.030.
    # Decodes: context = prompt + generated, 21, 22, 23 -> 10 + 1 + 0.5 * ctx = 21.5, 22, 22.5 ms.
    assert r["first_scheduled_s"] == 0.0
    assert r["first_token_s"] == close(0.030)
    assert r["completion_s"] == close(0.030 + 0.0215 + 0.022 + 0.0225)  # 0.096
    assert (r["status"], r["generated_tokens"], r["preemptions"]) == (COMPLETED, 4, 0)
    assert sim.iterations[0, 0] == 4
    # run_until_idle leaves the clock at the end of the last iteration, and every block free.
    assert sim.now_s[0] == close(0.096)
    state = sim.instance_state()
    assert state.kv_blocks_used[0, 0] == 0 and state.kv_blocks_free[0, 0] == 100
    assert state.num_running[0, 0] == 0 and state.num_waiting[0, 0] == 0


def test_output_of_one_token_completes_at_prefill():
    sim = make_sim()
    sim.dispatch(0, 0, 0, 40, 1, 0.0)
    sim.run_until_idle()
    r = request(sim, 0)
    # One prefill iteration of 10 + 40 = 50 ms produces the only token: first token = completion.
    assert r["first_token_s"] == close(0.050)
    assert r["completion_s"] == close(0.050)
    assert (r["status"], r["generated_tokens"]) == (COMPLETED, 1)
    assert sim.iterations[0, 0] == 1


def test_second_prefill_stalls_first_decode():
    sim = make_sim()
    sim.dispatch(0, 0, 0, 10, 5, 0.0)                 # A
    # A's prefill: [0, 0.020] (10 + 10 ms); its first decode starts at 0.020 < 0.025 and runs to
    # its end at 0.031 (10 + 1 ms), past the target.
    sim.advance_to(0.025)
    assert sim.now_s[0] == 0.025
    assert sim.instance_state().busy_until_s[0, 0] == close(0.031)
    assert request(sim, 0)["generated_tokens"] == 2
    sim.dispatch(0, 1, 0, 30, 2, 0.025)               # B, waits for the iteration in flight
    sim.run_until_idle()
    a, b = request(sim, 0), request(sim, 1)
    # t=0.031: prefill first: B's 30 tokens alone (A stalls): 40 ms -> 0.071, B's first token.
    # t=0.071: decode A and B: 10 + 2 = 12 ms -> 0.083; B has 2 = output tokens: completes.
    # t=0.083, 0.094: A decodes alone (11 ms each): A's 4th and 5th tokens; completes at 0.105.
    assert b["dispatch_s"] == 0.025
    assert b["first_scheduled_s"] == close(0.031)
    assert b["first_token_s"] == close(0.071)
    assert b["completion_s"] == close(0.083)
    assert a["first_token_s"] == close(0.020)
    assert a["completion_s"] == close(0.105)
    assert sim.iterations[0, 0] == 6


def test_watermark_blocks_admission():
    # 20 blocks, watermark_frac 0.1 -> watermark_blocks = int(0.1 * 20) = 2.
    profile = make_profile(kv_capacity_blocks=20, max_model_len=256)
    sim = make_sim(profile, watermark_frac=0.1)
    # A: 160 tokens = 10 blocks; B: 129 tokens = 9 blocks.
    sim.dispatch(0, [0, 1], 0, [160, 129], [3, 1], 0.0)
    sim.run_until_idle()
    a, b = request(sim, 0), request(sim, 1)
    # t=0: A admitted (20 - 10 = 10 >= 2); B not (10 - 9 = 1 < 2). Prefill A: 170 ms -> 0.170.
    # t=0.170: B still blocked; A decodes (context 161 needs an 11th block): 11 ms -> 0.181.
    # t=0.181: B blocked (9 free); A decodes -> 0.192, A's 3rd token: completes, 20 blocks free.
    # t=0.192: B admitted, prefill 129 tokens: 139 ms -> 0.331, its only token.
    assert a["completion_s"] == close(0.192)
    assert b["first_scheduled_s"] == close(0.192)
    assert b["first_token_s"] == close(0.331)
    assert b["completion_s"] == close(0.331)

    # Without the watermark both prefills share the first iteration: 10 + 160 + 129 = 299 ms.
    sim = make_sim(profile, watermark_frac=0.0)
    sim.dispatch(0, [0, 1], 0, [160, 129], [3, 1], 0.0)
    sim.run_until_idle()
    assert request(sim, 1)["first_scheduled_s"] == 0.0
    assert request(sim, 1)["completion_s"] == close(0.299)


def test_max_num_seqs_blocks_admission():
    sim = make_sim(max_num_seqs=1)
    sim.dispatch(0, [0, 1], 0, [10, 10], [3, 2], 0.0)
    sim.advance_to(0.001)
    state = sim.instance_state()
    assert (state.num_running[0, 0], state.num_waiting[0, 0]) == (1, 1)
    # A's prefill is in flight (nothing of it is done as a router sees it) and B's prompt waits
    assert state.pending_prefill_tokens[0, 0] == 10 + 10
    sim.run_until_idle()
    a, b = request(sim, 0), request(sim, 1)
    # A alone: prefill 20 ms -> 0.020, decodes -> 0.031, 0.042 (completes; B was blocked by the
    # one-sequence limit). B: prefill [0.042, 0.062], decode -> 0.073.
    assert a["completion_s"] == close(0.042)
    assert b["first_scheduled_s"] == close(0.042)
    assert b["first_token_s"] == close(0.062)
    assert b["completion_s"] == close(0.073)


def test_token_budget_splits_prefills_across_iterations():
    sim = make_sim(max_num_batched_tokens=256)
    # A, B, C of 100 tokens and D of 10, all 2 output tokens.
    sim.dispatch(0, [0, 1, 2, 3], 0, [100, 100, 100, 10], 2, 0.0)
    sim.run_until_idle()
    recs = [request(sim, i) for i in range(4)]
    # t=0: A (100 <= 256) and B (100 <= 156) admitted; C (100 > 56) not, and D behind it waits
    # too (strict FCFS). Prefill-only batch of 200 tokens: 210 ms -> 0.210.
    # t=0.210: C and D admitted (110 tokens): 120 ms -> 0.330 (A and B stall).
    # t=0.330: decode all four: 14 ms -> 0.344, everyone's second token.
    assert [r["first_scheduled_s"] for r in recs] == [0.0, 0.0, close(0.210), close(0.210)]
    assert [r["first_token_s"] for r in recs] == [close(0.210)] * 2 + [close(0.330)] * 2
    assert [r["completion_s"] for r in recs] == [close(0.344)] * 4
    assert sim.iterations[0, 0] == 3


def test_preemption_by_recompute():
    # 4 blocks of 16 tokens (64 tokens) and watermark int(0.04) = 0.
    profile = make_profile(kv_capacity_blocks=4, max_model_len=64)
    sim = make_sim(profile)
    sim.dispatch(0, [0, 1], 0, [16, 16], [20, 20], 0.0)   # A, B: 1 block each
    # t=0: prefill A and B (32 tokens): 42 ms -> 0.042, both have 1 token.
    # Decodes of both (12 ms each): the first one (contexts 17) takes a 2nd block each: 0 free.
    # After 16 decodes (t = 0.042 + 16 * 0.012 = 0.234) each has generated 17 tokens.
    sim.advance_to(0.1)
    sim.dispatch(0, 2, 0, 16, 1, 0.1)                     # C waits: no block is free
    # t=0.234: A's context 33 needs a 3rd block; none free -> the tail B is preempted (its 2
    # blocks freed), goes to the head of the waiting queue (before C); A decodes alone -> 0.245.
    sim.advance_to(0.240)
    state = sim.instance_state()
    assert (state.num_running[0, 0], state.num_waiting[0, 0]) == (1, 2)
    assert (state.kv_blocks_used[0, 0], state.kv_blocks_free[0, 0]) == (3, 1)
    # B will re-prefill prompt + generated = 16 + 17 = 33 tokens; C its 16-token prompt.
    assert state.pending_prefill_tokens[0, 0] == 33 + 16
    b = request(sim, 1)
    assert (b["status"], b["generated_tokens"], b["preemptions"]) == (WAITING, 17, 1)
    assert state.busy_until_s[0, 0] == close(0.245)
    # t=0.245, 0.256: B needs 3 blocks, 1 free: blocked, and C (which would fit) waits behind it.
    # A decodes -> 0.256, 0.267: 20 tokens, completes; 4 blocks free.
    # t=0.267: B (33 tokens, 3 blocks) and C (16, 1 block) prefill: 10 + 49 = 59 ms -> 0.326;
    # C's only token (completes), B's 18th.  B decodes -> 0.337, 0.348 (20th token, completes).
    sim.run_until_idle()
    a, b, c = request(sim, 0), request(sim, 1), request(sim, 2)
    assert a["completion_s"] == close(0.267) and a["preemptions"] == 0
    assert c["first_scheduled_s"] == close(0.267) and c["completion_s"] == close(0.326)
    assert b["first_scheduled_s"] == 0.0            # the first admission only
    assert b["first_token_s"] == close(0.042)       # the first prefill only
    assert b["completion_s"] == close(0.348)
    assert (b["status"], b["generated_tokens"], b["preemptions"]) == (COMPLETED, 20, 1)


def test_preempted_requests_keep_admission_order_at_the_waiting_head():
    # 3 blocks; A, B, C of 16 tokens (1 block each) all admitted at once. At the first decode,
    # A's context 17 needs a 2nd block and none is free -> the tail C is preempted and A takes
    # its block. B's context 17 needs one too, none is free and B is now the tail -> B itself is
    # preempted. Waiting queue afterwards: B, C (their admission order), A decodes alone.
    profile = make_profile(kv_capacity_blocks=3, max_model_len=48)
    sim = make_sim(profile)
    sim.dispatch(0, [0, 1, 2], 0, 16, [30, 30, 30], 0.0)
    # t=0: prefill 48 tokens: 58 ms -> 0.058. t=0.058: the decode above, A alone: 11 ms -> 0.069.
    sim.advance_to(0.060)
    recs = sim.records()
    assert recs.preemptions[0, :3].tolist() == [0, 1, 1]
    assert recs.status[0, :3].tolist() == [RUNNING, WAITING, WAITING]
    state = sim.instance_state()
    assert (state.num_running[0, 0], state.num_waiting[0, 0], state.kv_blocks_used[0, 0]) == (1, 2, 2)
    # Re-prefill targets: 16 + 1 generated token each.
    assert state.pending_prefill_tokens[0, 0] == 17 + 17
    sim.run_until_idle()
    recs = sim.records()
    # B, at the waiting head, is served before C: it completes first.
    assert recs.completion_s[0, 1] < recs.completion_s[0, 2]
    assert (recs.status[0, :3] == COMPLETED).all()


# --------------------------------------------------------------------------------------------
# Chunked prefill
# --------------------------------------------------------------------------------------------


def test_chunked_prefill_with_a_chunk_budget():
    # t_ms = 10 + Ntok + 0.001 * sum(chunk^2) + 0.01 * sum(chunk * prior); budget 64 tokens.
    profile = make_profile(c3=0.001, c4=0.01)
    sim = make_sim(profile, chunked_prefill=True, max_num_batched_tokens=64, max_num_seqs=8)
    sim.dispatch(0, [0, 1], 0, [100, 50], [3, 2], 0.0)     # A: 100-token prompt, B: 50
    # Iteration 1 (t=0): no decodes, budget 64: A admitted with chunk 64 (prior 0), budget 0 so B
    #   is not admitted.  10 + 64 + 0.001 * 64^2 = 78.096 ms.
    t1 = 0.078096
    sim.advance_to(0.001)
    state = sim.instance_state()
    assert (state.num_running[0, 0], state.num_waiting[0, 0]) == (1, 1)
    # A's first chunk is in flight: as a router sees it, none of A's prompt is processed yet
    assert state.pending_prefill_tokens[0, 0] == 100 + 50
    sim.advance_to(t1 + 0.001)  # the first chunk is done; the second is in flight
    assert sim.instance_state().pending_prefill_tokens[0, 0] == (100 - 64) + 50
    # Iteration 2: A's last chunk min(36, 64) = 36 with prior 64, budget 28 left; B admitted
    #   with chunk min(50, 28) = 28.  Ntok = 64:
    #   10 + 64 + 0.001 * (36^2 + 28^2) + 0.01 * (36 * 64) = 74 + 2.08 + 23.04 = 99.12 ms.
    #   A's prefill is complete: its first token.
    t2 = t1 + 0.09912
    # Iteration 3: D = {A} (context 101), budget 63; B's chunk min(22, 63) = 22, prior 28.
    #   Ntok = 23: 10 + 23 + 0.001 * 22^2 + 0.01 * 22 * 28 = 33 + 0.484 + 6.16 = 39.644 ms.
    #   B's first token; A's 2nd.
    t3 = t2 + 0.039644
    # Iteration 4: D = {A, B}: 12 ms. A's 3rd token and B's 2nd: both complete.
    t4 = t3 + 0.012
    sim.run_until_idle()
    a, b = request(sim, 0), request(sim, 1)
    assert a["first_scheduled_s"] == 0.0 and b["first_scheduled_s"] == close(t1)
    assert a["first_token_s"] == close(t2)
    assert b["first_token_s"] == close(t3)
    assert a["completion_s"] == close(t4) and b["completion_s"] == close(t4)
    assert sim.iterations[0, 0] == 4


def test_chunked_prefill_decodes_do_not_stall():
    # Sarathi: a new request's prefill joins the running request's decodes in one batch.
    sim = make_sim(chunked_prefill=True, max_num_batched_tokens=64, max_num_seqs=8)
    sim.dispatch(0, 0, 0, 10, 3, 0.0)
    sim.advance_to(0.025)   # A: prefill [0, 0.020], first decode [0.020, 0.031]
    sim.dispatch(0, 1, 0, 30, 1, 0.025)
    sim.run_until_idle()
    # t=0.031: D = {A}, budget 63: B admitted with its whole 30 tokens; Ntok = 31: 41 ms -> 0.072:
    # A's 3rd token (completes) and B's only token (completes).
    assert request(sim, 0)["completion_s"] == close(0.072)
    assert request(sim, 1)["completion_s"] == close(0.072)


# --------------------------------------------------------------------------------------------
# vLLM v1's scheduler: the same hand-computed cases on both simulators
# --------------------------------------------------------------------------------------------


def make_v1(profile, simulator, budget, max_num_seqs=4):
    config = ClusterConfig([profile], SchedulerConfig(scheduler="vllm-v1", max_num_batched_tokens=budget,
                                                      max_num_seqs=max_num_seqs))
    return simulator(config, num_clusters=1, max_requests=8)


@pytest.mark.parametrize("simulator", [ReferenceSimulator, ClusterSimulator])
def test_v1_takes_kv_blocks_chunk_by_chunk_and_admits_only_what_fits(simulator):
    # 8 blocks (128 tokens), budget 32. A: 100-token prompt, 2 output tokens; B: 20, 3.
    sim = make_v1(make_profile(kv_capacity_blocks=8, max_model_len=128), simulator, budget=32)
    sim.dispatch(0, [0, 1], 0, [100, 20], [2, 3], 0.0)
    # It. 1 [0, 42 ms]: A admitted with a chunk of 32 (2 blocks: v0 would take ceil(100/16) = 7),
    #   the budget is spent: B waits.
    sim.advance_to(0.001)
    assert sim.instance_state().kv_blocks_used[0, 0] == 2
    # It. 2, 3: A's chunks of 32 (blocks 4, then 6), 42 ms each -> 0.126.
    # It. 4: A's last 4 tokens (7 blocks), 28 tokens of budget left, but B's chunk of 20 needs 2
    #   blocks and 1 is free: B waits (no preemption for a waiting request). 14 ms -> 0.140, A's
    #   first token.
    # It. 5: A decodes (context 101 fits its 7 blocks), B still does not fit: 11 ms -> 0.151, A completes.
    # It. 6: B admitted whole (20 tokens, 2 blocks): 30 ms -> 0.181, its first token.
    # It. 7, 8: B decodes (contexts 21, 22 fit 2 blocks): 11 ms each -> 0.192, 0.203.
    sim.run_until_idle()
    a, b = request(sim, 0), request(sim, 1)
    assert a["first_token_s"] == close(0.140) and a["completion_s"] == close(0.151)
    assert b["first_scheduled_s"] == close(0.151) and b["first_token_s"] == close(0.181)
    assert b["completion_s"] == close(0.203)
    assert a["preemptions"] == b["preemptions"] == 0 and sim.iterations[0, 0] == 8


@pytest.mark.parametrize("simulator", [ReferenceSimulator, ClusterSimulator])
def test_v1_preempts_the_request_being_scheduled_when_it_is_the_last(simulator):
    # 4 blocks (64 tokens), budget 64. A: 16-token prompt, 10 output tokens; B: 30, 5.
    sim = make_v1(make_profile(kv_capacity_blocks=4, max_model_len=64), simulator, budget=64)
    sim.dispatch(0, [0, 1], 0, [16, 30], [10, 5], 0.0)
    # It. 1: A (16 tokens, 1 block) and B (30, 2 blocks) admitted: 10 + 46 = 56 ms, both first tokens.
    # It. 2: A's context 17 needs a 2nd block (the last free one); B's 31 fits: 12 ms -> 0.068.
    # It. 3: contexts 18, 32 fit: 12 ms -> 0.080.
    # It. 4: B's context 33 needs a 3rd block, none is free: the last running request is B itself,
    #   preempted (its 2 blocks freed, 3 tokens generated); A alone: 11 ms -> 0.091.
    # It. 5-10: B's recompute (33 tokens, 3 blocks) never fits beside A's 2 blocks; A decodes alone,
    #   6 x 11 ms -> 0.157: A's 10th token, A completes.
    # It. 11: B admitted, 33 tokens: 43 ms -> 0.200, its 4th token. It. 12: 11 ms -> 0.211, B completes.
    sim.run_until_idle()
    a, b = request(sim, 0), request(sim, 1)
    assert a["completion_s"] == close(0.157) and a["preemptions"] == 0
    assert b["first_token_s"] == close(0.056) and b["completion_s"] == close(0.211) and b["preemptions"] == 1
    assert sim.iterations[0, 0] == 12


@pytest.mark.parametrize("simulator", [ReferenceSimulator, ClusterSimulator])
def test_v1_preempts_the_last_admitted_for_an_earlier_request(simulator):
    # 4 blocks. A, B, C: 16-token prompts; 3, 3 and 2 output tokens.
    sim = make_v1(make_profile(kv_capacity_blocks=4, max_model_len=64), simulator, budget=64)
    sim.dispatch(0, [0, 1, 2], 0, 16, [3, 3, 2], 0.0)
    # It. 1: all three admitted, 1 block each (1 free): 10 + 48 = 58 ms, first tokens.
    # It. 2: A's context 17 takes the free block; B's needs one: C (the last admitted) is preempted
    #   and B gets its block. No admission in a step that preempts: A, B decode, 12 ms -> 0.070.
    # It. 3: A, B decode (C's recompute, 17 tokens, needs 2 blocks, none free): 12 ms -> 0.082, both complete.
    # It. 4: C recomputes its 17 tokens: 27 ms -> 0.109, its 2nd token: C completes.
    sim.run_until_idle()
    a, c = request(sim, 0), request(sim, 2)
    assert a["completion_s"] == close(0.082) and request(sim, 1)["completion_s"] == close(0.082)
    assert c["preemptions"] == 1 and c["first_token_s"] == close(0.058) and c["completion_s"] == close(0.109)
    assert request(sim, 0)["preemptions"] == request(sim, 1)["preemptions"] == 0


# --------------------------------------------------------------------------------------------
# The clock: dispatch during an iteration, ties, idle instances
# --------------------------------------------------------------------------------------------


def test_dispatch_during_an_iteration_waits_for_its_end():
    sim = make_sim()
    sim.dispatch(0, 0, 0, 90, 1, 0.0)     # A: one 100 ms prefill
    sim.advance_to(0.05)                   # A's iteration started at 0 < 0.05: it runs to 0.100
    assert sim.instance_state().busy_until_s[0, 0] == close(0.100)
    sim.dispatch(0, 1, 0, 10, 1, 0.05)    # B at t=0.05
    sim.run_until_idle()
    b = request(sim, 1)
    assert b["dispatch_s"] == 0.05
    assert b["first_scheduled_s"] == close(0.100)       # starts when A's iteration ends
    assert b["completion_s"] == close(0.120)            # 10 + 10 ms


def test_iteration_starts_only_strictly_before_the_target():
    sim = make_sim()
    sim.dispatch(0, 0, 0, 10, 3, 0.0)
    sim.advance_to(0.02)       # the prefill ends exactly at 0.02: no decode starts at 0.02
    assert sim.iterations[0, 0] == 1
    assert request(sim, 0)["generated_tokens"] == 1
    sim.advance_to(0.02)       # the same target again: nothing happens
    assert sim.iterations[0, 0] == 1
    sim.advance_to(np.nextafter(0.02, 1.0))
    assert sim.iterations[0, 0] == 2


def test_idle_instance_clock_catches_up_with_dispatch():
    sim = make_sim(num_instances=2)
    sim.dispatch(0, 0, 0, 10, 2, 0.0)
    sim.advance_to(1.0)
    assert request(sim, 0)["completion_s"] == close(0.031)
    sim.dispatch(0, [1, 2], [0, 1], 10, 1, [0.5, 1.0])
    sim.run_until_idle()
    for rid in (1, 2):
        r = request(sim, rid)
        assert r["dispatch_s"] == 1.0 and r["first_scheduled_s"] == 1.0
        assert r["completion_s"] == close(1.020)
    assert sim.now_s[0] == close(1.020)
    assert sim.iterations[0].tolist() == [3, 1]


def test_records_before_and_after_dispatch_and_reset():
    sim = ReferenceSimulator(ClusterConfig([SIMPLE]), num_clusters=2, max_requests=4)
    rec = sim.records()
    assert rec.status.shape == (2, 4) and rec.status.dtype == np.int64
    assert rec.completion_s.dtype == np.float64
    assert (rec.status == NOT_DISPATCHED).all() and (rec.instance == -1).all()
    assert np.isnan(rec.arrival_s).all()
    sim.dispatch([0, 1], 0, 0, 10, 2, 0.0)
    sim.advance_to([0.5, 0.01])
    assert sim.now_s.tolist() == [0.5, 0.01]
    sim.reset(np.array([True, False]))
    rec = sim.records()
    assert rec.status[0, 0] == NOT_DISPATCHED and rec.status[1, 0] == RUNNING
    assert sim.now_s.tolist() == [0.0, 0.01] and sim.iterations[0, 0] == 0
    sim.reset([1])
    assert (sim.records().status == NOT_DISPATCHED).all() and (sim.now_s == 0).all()
    # records() hands out copies
    rec = sim.records()
    rec.status[:] = COMPLETED
    assert (sim.records().status == NOT_DISPATCHED).all()


# --------------------------------------------------------------------------------------------
# Input validation: ValueError naming the field
# --------------------------------------------------------------------------------------------


def test_dispatch_validation_names_the_field():
    sim = make_sim(num_instances=2)
    sim.advance_to(1.0)
    with pytest.raises(ValueError, match="instance"):
        sim.dispatch(0, 0, 2, 10, 2, 0.0)
    with pytest.raises(ValueError, match="instance"):
        sim.dispatch(0, 0, -1, 10, 2, 0.0)
    with pytest.raises(ValueError, match="prompt_tokens must be integers"):
        sim.dispatch(0, 0, 0, 10.5, 2, 0.0)
    with pytest.raises(ValueError, match="output_tokens must be integers"):
        sim.dispatch(0, 0, 0, 10, "two", 0.0)
    with pytest.raises(ValueError, match=r"prompt_tokens \(must be >= 1\)"):
        sim.dispatch(0, 0, 0, 0, 2, 0.0)
    with pytest.raises(ValueError, match=r"output_tokens \(must be >= 1\)"):
        sim.dispatch(0, 0, 0, 10, -3, 0.0)
    with pytest.raises(ValueError, match=r"arrival_s \(NaN\)"):
        sim.dispatch(0, 0, 0, 10, 2, math.nan)
    with pytest.raises(ValueError, match=r"arrival_s \(negative\)"):
        sim.dispatch(0, 0, 0, 10, 2, -0.1)
    with pytest.raises(ValueError, match=r"arrival_s \(after the cluster's current time\)"):
        sim.dispatch(0, 0, 0, 10, 2, 1.5)
    with pytest.raises(ValueError, match="max_model_len"):
        sim.dispatch(0, 0, 0, 200, 57, 0.0)
    with pytest.raises(ValueError, match="request_id"):
        sim.dispatch(0, 8, 0, 10, 2, 0.0)
    with pytest.raises(ValueError, match="request_id"):
        sim.dispatch(0, [3, 3], 0, 10, 2, 0.0)       # twice in one call
    # Nothing was dispatched by the failing calls.
    assert (sim.records().status == NOT_DISPATCHED).all()
    sim.dispatch(0, 3, 0, 10, 2, 0.0)
    with pytest.raises(ValueError, match=r"request_id \(already dispatched"):
        sim.dispatch(0, 3, 1, 10, 2, 0.0)


def test_advance_to_validation():
    sim = make_sim()
    sim.advance_to(1.0)
    with pytest.raises(ValueError, match="t_s.*time never goes back"):
        sim.advance_to(0.5)
    with pytest.raises(ValueError, match="t_s must not be NaN"):
        sim.advance_to(math.nan)
    with pytest.raises(ValueError, match="t_s must be a scalar or have shape"):
        sim.advance_to([1.0, 2.0])
    assert sim.now_s[0] == 1.0
