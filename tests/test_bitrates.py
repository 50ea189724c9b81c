"""The measured bitrates reproduce the paper's figures (docs/contract.md §5) on N = 4096, k = 16."""

from __future__ import annotations

import math

import pytest
from superposition_harness import Problem
from superposition_harness.runner import RunSettings, run_decoder
from superposition_harness_builtins.mp import MatchingPursuit
from superposition_harness_builtins.threshold import ThresholdDecoder
from superposition_harness_builtins.topk import TopKDecoder

pytestmark = pytest.mark.slow

N, K = 4096, 16


@pytest.fixture(scope="module")
def runs():
    problem = Problem(n=N, k=K)
    settings = RunSettings()
    return {cls.name: run_decoder(problem, cls(), settings)
            for cls in (ThresholdDecoder, TopKDecoder, MatchingPursuit)}


def test_every_run_succeeds(runs):
    assert all(run.ok and run.estimate.d for run in runs.values())


def test_matching_pursuit_needs_about_1_3_dims_per_bit(runs):
    h = Problem(n=N, k=K).entropy_bits
    assert 1.0 <= runs["mp"].estimate.d / h <= 1.6
    # Even odds near d ≈ H (the paper's rule of thumb for unit-step MP).
    assert 0.7 * h <= runs["mp"].half.d <= 1.2 * h


def test_topk_needs_at_least_two_and_a_half_times_mp(runs):
    assert runs["topk"].estimate.d >= 2.5 * runs["mp"].estimate.d
    h = Problem(n=N, k=K).entropy_bits
    assert runs["topk"].estimate.d / h >= 2.7


def test_threshold_stays_below_one_sixth_bit_per_dim(runs):
    h = Problem(n=N, k=K).entropy_bits
    assert h / runs["threshold"].estimate.d < 1 / 6
    assert runs["threshold"].estimate.d >= runs["topk"].estimate.d


@pytest.mark.parametrize("name, rule", [("threshold", 8 * K * math.log(N)),
                                        ("topk", 4 * K * math.log(K * N))])
def test_one_step_decoders_follow_the_papers_rules_of_thumb(runs, name, rule):
    """threshold d ≈ 8 k ln N, top-k d ≈ 4 k ln(kN), within 25%."""
    assert 0.75 * rule <= runs[name].estimate.d <= 1.25 * rule
