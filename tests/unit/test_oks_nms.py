"""OKS and greedy OKS-NMS: vectorised version against a brute-force oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest

from posenfs_cli.data.layouts import COCO
from posenfs_cli.evaluation.oks_nms import compute_oks, oks_nms
from tests.oracles import oks_nms_bruteforce

SIGMAS = np.array(COCO.sigmas)
K = len(SIGMAS)


def skip_next_nms(kpts, scores, areas, threshold):
    """The released code's fault: removing from the list being iterated skips the next one."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep = []
    while order:
        best = order.pop(0)
        keep.append(best)
        for j in order:  # mutating `order` inside this loop skips the element after a removal
            if compute_oks(kpts[best], kpts[j][None], areas[best], areas[[j]])[0] > threshold:
                order.remove(j)
    return keep


def test_compute_oks_known_values():
    g = np.zeros((K, 3))
    g[:, 2] = 1.0
    d = np.repeat(g[None], 3, axis=0)
    d[1, :, 0] = 1.0  # every joint 1 px off
    d[2, 0, 0] = 1e6  # one joint far away -> contributes 0
    area, areas = 100.0, np.array([100.0, 300.0, 100.0])
    oks = compute_oks(g, d, area, areas)
    scale = (area + 300.0) / 2 + np.spacing(1)
    expected_1 = np.mean(np.exp(-1.0 / (2 * SIGMAS) ** 2 / scale / 2))
    np.testing.assert_allclose(oks, [1.0, expected_1, (K - 1) / K])
    # vis_thr: only joints scored above it in both instances count
    d[2, 0, 2] = 0.0
    assert compute_oks(g, d[2:], area, areas[2:], vis_thr=0.5)[0] == pytest.approx(1.0)
    d[2, :, 2] = 0.0
    assert compute_oks(g, d[2:], area, areas[2:], vis_thr=0.5)[0] == 0.0


def random_instances(rng, n_clusters, per_cluster):
    """Clusters of near-duplicate poses: OKS inside a cluster spreads around typical thresholds."""
    n = n_clusters * per_cluster
    base = rng.uniform(0, 300, (n_clusters, 1, K, 2))
    jitter = rng.uniform(0.5, 12.0, (n_clusters, per_cluster, 1, 1))
    xy = base + rng.normal(size=(n_clusters, per_cluster, K, 2)) * jitter
    kpts = np.concatenate([xy.reshape(n, K, 2), rng.uniform(0, 1, (n, K, 1))], axis=-1)
    scores = rng.uniform(0, 1, n)
    scores[rng.random(n) < 0.1] = 0.5  # some ties, resolved by index in both versions
    areas = rng.uniform(1000, 20000, n)
    perm = rng.permutation(n)
    return kpts[perm], scores[perm], areas[perm]


@pytest.mark.parametrize("vis_thr", [None, 0.3])
@pytest.mark.parametrize("threshold", [0.5, 0.9])
def test_vectorised_nms_equals_bruteforce(threshold, vis_thr):
    suppressed_total = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        kpts, scores, areas = random_instances(rng, rng.integers(1, 5), rng.integers(1, 8))
        fast = oks_nms(kpts, scores, areas, threshold, SIGMAS, vis_thr)
        slow = oks_nms_bruteforce(kpts, scores, areas, threshold, SIGMAS, vis_thr)
        np.testing.assert_array_equal(fast, slow, err_msg=f"seed {seed}")
        assert fast.dtype == np.int64
        suppressed_total += len(scores) - len(fast)
    assert suppressed_total > 20  # the cases actually exercise suppression


def test_hand_made_case_where_skip_next_bug_differs():
    base = np.zeros((K, 3))
    base[:, 0] = np.linspace(0, 160, K)
    base[:, 1] = np.linspace(0, 80, K)
    base[:, 2] = 1.0
    far = base.copy()
    far[:, 0] += 500
    # A, B, C are the same pose (OKS 1 > 0.9); D is another person.
    kpts = np.stack([base, base, base, far])
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    areas = np.full(4, 5000.0)
    # B is suppressed by A; the buggy loop then never tests C, which survives.
    assert skip_next_nms(kpts, scores, areas, 0.9) == [0, 2, 3]
    np.testing.assert_array_equal(oks_nms(kpts, scores, areas, 0.9), [0, 3])
    np.testing.assert_array_equal(oks_nms_bruteforce(kpts, scores, areas, 0.9), [0, 3])


def test_nms_keeps_everything_when_nothing_overlaps_and_orders_by_score():
    rng = np.random.default_rng(0)
    kpts = np.concatenate(
        [rng.uniform(0, 50, (5, K, 2)) + 1000 * np.arange(5)[:, None, None], np.ones((5, K, 1))],
        axis=-1,
    )
    scores = np.array([0.2, 0.9, 0.5, 0.1, 0.7])
    keep = oks_nms(kpts, scores, np.full(5, 2500.0))
    np.testing.assert_array_equal(keep, [1, 4, 2, 0, 3])
    assert oks_nms(kpts[:0], scores[:0], np.zeros(0)).size == 0
    assert math.isclose(compute_oks(kpts[0], kpts[:1], 2500.0, [2500.0])[0], 1.0)
