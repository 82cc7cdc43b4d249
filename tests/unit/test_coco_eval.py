"""COCO keypoint evaluation on the real samples in ../shared/data/coco."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from posenfs_cli.data.jsonio import load_detections
from posenfs_cli.errors import PosenfsError
from posenfs_cli.evaluation.coco_eval import (
    STAT_NAMES,
    box_areas_from_scale,
    build_results,
    evaluate_coco,
    rescore,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
COCO_DIR = DATA / "coco"
needs_coco = pytest.mark.skipif(
    not (COCO_DIR / "test_coco.json").is_file(),
    reason=f"real COCO samples not found at {COCO_DIR} (shared test data absent)",
)


@pytest.fixture(scope="module")
def coco_gt():
    from pycocotools.coco import COCO as CocoApi

    with contextlib.redirect_stdout(io.StringIO()):
        return CocoApi(str(COCO_DIR / "test_coco.json"))


def gt_instances(coco_gt):
    """GT persons with labelled keypoints as predictions: labelled joints score 1, others 0."""
    anns = [a for a in coco_gt.loadAnns(coco_gt.getAnnIds(iscrowd=False)) if a["num_keypoints"] > 0]
    kpts = np.array([a["keypoints"] for a in anns], dtype=np.float64).reshape(len(anns), 17, 3)
    kpts[..., 2] = (kpts[..., 2] > 0).astype(np.float64)
    ids = np.array([a["image_id"] for a in anns])
    areas = np.array([a["area"] for a in anns])
    return ids, kpts, areas


def test_rescore_hand_values():
    kp = np.zeros((3, 4, 3))
    kp[0, :, 2] = [0.1, 0.5, 0.9, 0.2]  # 0.2 is not > 0.2
    kp[1, :, 2] = [0.1, 0.2, 0.0, 0.15]  # nothing above threshold -> 0
    kp[2, :, 2] = 1.0
    np.testing.assert_allclose(rescore(kp, [0.8, 0.9, 0.5]), [0.8 * 0.7, 0.0, 0.5])


def test_box_areas_from_scale():
    np.testing.assert_allclose(box_areas_from_scale([[1.0, 2.0], [0.5, 0.5]]), [80000, 10000])


def test_build_results_format_and_nms():
    kp = np.zeros((3, 17, 3))
    kp[..., 0] = np.arange(17) * 10.0
    kp[..., 1] = 50.0
    kp[..., 2] = 0.9
    kp[2, :, 0] += 400  # a different person
    res = build_results([7, 7, 7], kp, [1.0, 0.6, 0.8], [4000, 4000, 4000])
    # instance 1 duplicates instance 0 (OKS 1 > 0.9) with a lower score: removed
    assert [r["score"] for r in res] == pytest.approx([0.9, 0.72])
    assert {tuple(r) for r in res} == {("image_id", "category_id", "keypoints", "score")}
    assert all(r["image_id"] == 7 and r["category_id"] == 1 for r in res)
    assert res[1]["keypoints"] == kp[2].reshape(-1).tolist() and len(res[0]["keypoints"]) == 51
    json.dumps(res)  # plain Python numbers
    assert len(build_results([7, 7, 7], kp, [1.0, 0.6, 0.8], [4000] * 3, nms=False)) == 3
    # NMS is per image: the same pose in another image is kept
    assert len(build_results([7, 8, 7], kp, [1.0, 0.6, 0.8], [4000] * 3)) == 3


@needs_coco
def test_gt_as_predictions_gives_perfect_ap(coco_gt):
    ids, kpts, areas = gt_instances(coco_gt)
    results = build_results(ids, kpts, np.ones(len(ids)), areas)
    assert len(results) == len(ids) == 12
    stats = evaluate_coco(coco_gt, results)
    assert list(stats) == list(STAT_NAMES)
    assert stats["AP"] >= 0.999
    for name in STAT_NAMES:
        assert stats[name] == pytest.approx(1.0, abs=1e-3), name
    assert "area" not in results[0]  # the caller's results are not mutated by loadRes


@needs_coco
def test_perturbation_lowers_ap(coco_gt):
    ids, kpts, areas = gt_instances(coco_gt)
    noisy = kpts.copy()
    noisy[..., :2] += np.random.default_rng(0).normal(scale=8.0, size=noisy[..., :2].shape)
    stats = evaluate_coco(coco_gt, build_results(ids, noisy, np.ones(len(ids)), areas))
    assert 0.0 < stats["AP"] < 0.9


@needs_coco
def test_image_id_restriction(coco_gt):
    ids, kpts, areas = gt_instances(coco_gt)
    one = ids == ids[0]
    results = build_results(ids[one], kpts[one], np.ones(one.sum()), areas[one])
    assert evaluate_coco(coco_gt, results, image_ids=[int(ids[0])])["AP"] >= 0.999
    assert evaluate_coco(coco_gt, results)["AR"] < 0.9  # other images' people are missed


@needs_coco
def test_evaluate_errors(coco_gt):
    with pytest.raises(PosenfsError, match="no keypoint results"):
        evaluate_coco(coco_gt, [])
    bad = [{"image_id": 123456789, "category_id": 1, "keypoints": [0.0] * 51, "score": 1.0}]
    with pytest.raises(PosenfsError, match="not in the ground truth"):
        evaluate_coco(coco_gt, bad)


@needs_coco
def test_load_detections_real_file():
    path = COCO_DIR / "test_coco_det_AP_H_56.json"
    raw = json.loads(path.read_text())
    dets = load_detections(path, score_thr=0.3)
    expected = [d for d in raw if d["category_id"] == 1 and d["score"] >= 0.3]
    assert 0 < len(dets) == len(expected) < len(raw)
    assert all(d["score"] >= 0.3 and d["category_id"] == 1 for d in dets)
    assert dets[0] == {
        "image_id": expected[0]["image_id"],
        "category_id": 1,
        "bbox": expected[0]["bbox"],
        "score": expected[0]["score"],
    }
    assert len(load_detections(path)) == sum(d["category_id"] == 1 for d in raw)


def test_load_detections_keeps_category_1_only(tmp_path):
    path = tmp_path / "dets.json"
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 20], "score": 0.9},
        {"image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 20], "score": 0.9},
        {"image_id": 2, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.1},
    ]
    path.write_text(json.dumps(dets))
    assert [d["image_id"] for d in load_detections(path, 0.5)] == [1]
    assert load_detections(path, 0.0)[1]["bbox"] == [1.0, 2.0, 3.0, 4.0]


GOOD = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 20], "score": 0.9}


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"annotations": []}), "JSON list"),
        (json.dumps([GOOD, {k: v for k, v in GOOD.items() if k != "bbox"}]), "entry 1 has no"),
        (json.dumps([{**GOOD, "bbox": [0, 0, 10]}]), "bbox"),
        (json.dumps([{**GOOD, "score": "high"}]), "score"),
        (json.dumps([{**GOOD, "image_id": "a.jpg"}]), "image_id"),
        (json.dumps([{**GOOD, "bbox": [0, 0, -5, 10]}]), "negative"),
        (json.dumps([3]), "not an object"),
    ],
)
def test_load_detections_malformed(tmp_path, content, match):
    path = tmp_path / "bad_dets.json"
    path.write_text(content)
    with pytest.raises(PosenfsError, match=match) as info:
        load_detections(path)
    assert "bad_dets.json" in str(info.value)


def test_load_detections_missing_file(tmp_path):
    with pytest.raises(PosenfsError, match="does not exist"):
        load_detections(tmp_path / "nope.json")
