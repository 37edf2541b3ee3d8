from __future__ import annotations

import numpy as np
import pytest

from data.errors import ConfigError
from labeling.acquisition import (
    acquisition_scores,
    bald,
    entropy,
    k_center_greedy,
    random,
    select_batch,
    variance,
)

# K=3 members, N=3 pairs: members split 0.9/0.1, agree on a coin flip, mildly disagree.
MEMBER_P = np.array(
    [
        [0.9, 0.5, 0.8],
        [0.1, 0.5, 0.6],
        [0.5, 0.5, 0.7],
    ]
)


def test_variance_matches_hand_computation():
    # pair 0: mean 0.5, deviations 0.4, -0.4, 0 -> 0.32/3
    np.testing.assert_allclose(variance(MEMBER_P), [0.32 / 3, 0.0, 0.02 / 3], atol=1e-12)


def test_entropy_matches_hand_computation():
    # H(0.5) = ln 2; H(0.7) = -(0.7 ln 0.7 + 0.3 ln 0.3) = 0.6108643
    np.testing.assert_allclose(entropy(MEMBER_P), [np.log(2), np.log(2), 0.6108643], atol=1e-6)


def test_bald_matches_hand_computation():
    # pair 0: ln2 - (H(.9) + H(.1) + H(.5))/3 = 0.6931472 - (0.3250830*2 + 0.6931472)/3
    # pair 1: every member says 0.5: no disagreement, BALD 0 though entropy is maximal
    # pair 2: H(.7) - (H(.8) + H(.6) + H(.7))/3 = 0.6108643 - 0.5947595
    expected = [0.6931472 - (2 * 0.3250830 + 0.6931472) / 3, 0.0, 0.6108643 - 0.5947595]
    np.testing.assert_allclose(bald(MEMBER_P), expected, atol=1e-6)


def test_random_is_seeded_uniform_and_strategy_names_are_checked():
    a = random(MEMBER_P, np.random.default_rng(3))
    b = acquisition_scores("random", MEMBER_P, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3,) and ((a >= 0) & (a < 1)).all()
    with pytest.raises(ConfigError, match="variance, bald, entropy, random"):
        acquisition_scores("margin", MEMBER_P)


def test_k_center_greedy_picks_farthest_points():
    pts = np.array([[0.0, 0], [0.1, 0], [10, 0], [10.1, 0], [5, 5]])
    assert k_center_greedy(pts, 3, first=0) == [0, 3, 4]
    assert k_center_greedy(pts, 10) == k_center_greedy(pts, 5)  # capped at n


def test_select_batch_top_k_and_diverse():
    scores = np.array([0.9, 0.89, 0.88, 0.1, 0.5])
    assert select_batch(scores, 2) == [0, 1]
    # 0, 1, 2 are near-duplicates: with diversity the batch takes one of them and a far point
    vectors = np.array([[0.0, 0], [0.01, 0], [0.02, 0], [9, 9], [5, 0]])
    picked = select_batch(scores, 2, vectors=vectors, candidate_factor=3)
    assert picked[0] == 0 and picked[1] != 1 and len(set(picked)) == 2
    assert select_batch(scores, 0) == []


def test_penalty_scale_puts_the_extra_penalty_on_embedding_blocks_only():
    from labeling.features import penalty_scale

    scale = penalty_scale(("joint_tail", "response", "length"), 3 * 2 + 2, 100.0)
    np.testing.assert_array_equal(scale, [10, 10, 10, 10, 10, 10, 1, 1])
    np.testing.assert_array_equal(penalty_scale(("length",), 2, 100.0), [1, 1])
    np.testing.assert_array_equal(penalty_scale(("length", "response"), 5, 4.0), [1, 1, 2, 2, 2])
