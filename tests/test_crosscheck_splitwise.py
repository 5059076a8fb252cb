"""tools/crosscheck_splitwise.py: SplitwiseSim's iteration function as the script rebuilds it, and (with
a SplitwiseSim checkout) a short end-to-end comparison.

Other projects' files are not shipped: the perf table is read at ../shared/data, SplitwiseSim from
$SPLITWISE_SIM (a checkout of github.com/Mutinifni/splitwise-sim) run by $SPLITWISE_PYTHON; each test
skips without them.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import crosscheck_splitwise as xc  # noqa: E402

PERF_CSV = ROOT.parent / "shared" / "data" / "splitwise_perf_model" / "perf_model.csv"
needs_table = pytest.mark.skipif(not PERF_CSV.is_file(), reason="needs ../shared/data/splitwise_perf_model")


@needs_table
def test_iteration_function_is_splitwisesims_lookup():
    # Expected values: medians of the llama2-70b / a100-80gb / TP4 rows per prompt_size x batch_size,
    # computed with pandas (as SplitwiseSim's DatabasePerformanceModel does), read off by hand.
    f = xc.splitwise_iteration_ms(PERF_CSV)
    assert float(f(2048, 0)) == pytest.approx(427.3927035392262, rel=1e-12)  # a lone 2048-token prompt
    assert float(f(0, 128)) == pytest.approx(42.419229817437376, rel=1e-12)  # 128 decodes: token_time at x = 128
    # below the table (x >= 128) the line through x = 128 and 256 is extended
    assert float(f(0, 1)) == pytest.approx(42.419229817437376 + (1 - 128) * (42.175943 - 42.419229817437376) / 128,
                                           rel=1e-6)
    # a prompt with decodes: prompt_time at prompt + decodes tokens, times 1.1
    assert float(f(1000, 24)) == pytest.approx(1.1 * 247.38405196694657, rel=1e-12)


@needs_table
def test_equivalent_profile_fit_is_close_to_splitwisesims_function():
    profile, per_kind = xc.fit_equivalent_profile(xc.splitwise_iteration_ms(PERF_CSV))
    assert profile.c5_ms_per_decode_context_token == 0.0  # SplitwiseSim's times ignore the context
    for kind, (mape, max_ape) in per_kind.items():
        assert mape < 7.0 and max_ape < 20.0, (kind, mape, max_ape)


def test_kv_capacity_is_splitwisesims_memory_model():
    # 4 x 80 GiB minus 135 GB of weights, 2 (K, V) x 8192 hidden x 80 layers x 2 bytes per token
    assert xc.SPLITWISE_KV_TOKENS == (4 * 85899345920 - 135_000_000_000) // 2621440 == 79573


SPLITWISE = os.environ.get("SPLITWISE_SIM")
SPLITWISE_PYTHON = os.environ.get("SPLITWISE_PYTHON")


@pytest.mark.slow
@needs_table
@pytest.mark.skipif(not (SPLITWISE and SPLITWISE_PYTHON), reason="set SPLITWISE_SIM and SPLITWISE_PYTHON")
def test_end_to_end_small_run(tmp_path):
    out = tmp_path / "report.txt"
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "crosscheck_splitwise.py"), "--splitwise", SPLITWISE,
                           "--splitwise-python", SPLITWISE_PYTHON, "--requests", "200", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    assert text.count("SplitwiseSim (Splitwise instance)") == 2
    assert text.count("ours v0-chunked, splitwise-equivalent") == 2


def test_bad_checkout_is_named(tmp_path):
    with pytest.raises(ValueError, match="not a SplitwiseSim checkout"):
        xc.prepare_splitwise(tmp_path, tmp_path / "work")
