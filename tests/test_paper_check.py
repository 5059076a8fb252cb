"""The llama2-7b-v100 profile reproduces the paper's interference figures (paper-facts §1.4)."""

import pytest

from llm_routing_env.experiments import paper_interference_experiment


def test_lone_request_takes_about_17_s():
    e2e = paper_interference_experiment("llama2-7b-v100", joiners=False)
    assert e2e == pytest.approx(17.0, rel=0.10)


def test_joiners_every_50_iterations_stretch_it_to_about_31_s():
    e2e = paper_interference_experiment("llama2-7b-v100", joiners=True)
    assert e2e == pytest.approx(31.0, rel=0.10)


def test_interference_is_what_slows_it():
    assert paper_interference_experiment(joiners=True) > 1.5 * paper_interference_experiment(joiners=False)
