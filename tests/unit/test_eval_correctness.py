"""Evaluation on inputs people really have: missed images, NaN predictions, unusual COCO files.

Each test pins a behaviour that was wrong before: the oracles are pycocotools' COCOeval run
directly and hand-counted PCKh values.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
import torch

from posenfs_cli.config import AugmentConfig
from posenfs_cli.data.base import FileImageSource
from posenfs_cli.data.coco import COCODataset, coco_from_dict, parse_coco_records
from posenfs_cli.data.layouts import COCO
from posenfs_cli.data.mpii import MPIIDataset
from posenfs_cli.errors import PosenfsError
from posenfs_cli.evaluation.coco_eval import build_results
from posenfs_cli.evaluation.decode import decode_heatmaps, get_max_preds
from posenfs_cli.evaluation.evaluator import Predictions, score
from posenfs_cli.evaluation.pckh import compute_pckh
from tests.conftest import SHARED_DATA, needs_shared

COCO_JSON = SHARED_DATA / "coco" / "test_coco.json"
IMAGES = FileImageSource(str(SHARED_DATA / "coco"))  # only asked which files exist
KW = {"input_size": [128, 96], "sigma": 2.0, "augment": AugmentConfig(), "train": False}


def coco_eval_direct(gt: dict, results: list[dict], image_ids=None) -> np.ndarray:
    """pycocotools' own numbers, nothing of ours in between."""
    from pycocotools.coco import COCO as CocoApi
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = CocoApi()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), "keypoints")
        if image_ids is not None:
            ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def gt_as_predictions(ds: COCODataset) -> Predictions:
    """Each GT record predicted exactly: labelled joints score 1, the others 0."""
    r = ds.records
    joints = r.joints.astype(np.float64)
    meta = {
        "index": np.arange(len(r)),
        "image_id": r.image_ids,
        "joints": joints,
        "headbox": r.headboxes,
        "center": r.centers,
        "scale": r.scales,
        "rotation": np.zeros(len(r)),
        "score": np.ones(len(r)),
        "valid": np.ones(len(r), bool),
    }
    return Predictions(joints[..., :2].copy(), (joints[..., 2] > 0).astype(float), meta)


def subset(preds: Predictions, keep: np.ndarray) -> Predictions:
    return Predictions(
        preds.coords[keep], preds.scores[keep], {k: v[keep] for k, v in preds.meta.items()}
    )


# --- 1. every GT image counts in COCO AP ----------------------------------------------------
@needs_shared
def test_coco_ap_counts_images_without_predictions():
    gt = json.loads(COCO_JSON.read_text())
    ds = COCODataset(coco_from_dict(copy.deepcopy(gt)), IMAGES, ann_name="t", **KW)
    preds = gt_as_predictions(ds)
    dropped = int(ds.records.image_ids[0])
    part = subset(preds, preds.meta["image_id"] != dropped)
    metrics = score(part, COCO, ds)
    direct = coco_eval_direct(gt, metrics["coco_results"], image_ids=sorted(ds.image_ids))
    assert metrics["ap"] == pytest.approx(direct[0], abs=1e-12)
    assert metrics["ar"] == pytest.approx(direct[5], abs=1e-12)
    # the missed people cost recall: the old "images with predictions only" gave AP = AR = 1
    assert metrics["ar"] < 0.99 and metrics["ap"] < 0.99


# --- 2. non-finite predictions are misses -----------------------------------------------------
def test_pckh_counts_nan_prediction_of_labelled_joint_as_wrong():
    gt = np.zeros((2, 16, 2))
    pred = gt.copy()
    vis = np.ones((2, 16), bool)
    vis[1, 3] = False  # one unlabelled joint: not counted whatever its prediction
    pred[0, 0] = np.nan  # labelled r-ankle: a miss
    pred[0, 15, 1] = np.inf  # labelled l-wrist: a miss
    pred[1, 3] = np.nan  # unlabelled: ignored
    boxes = np.tile([0.0, 0.0, 10.0, 10.0], (2, 1))
    res = compute_pckh(pred, gt, vis, boxes)
    # 14 mean joints × 2 persons, minus the unlabelled l-hip = 27 labelled, 2 of them wrong
    assert res.mean == pytest.approx(100.0 * 25 / 27)
    assert res.non_finite == 2
    assert res.per_joint[0, 0] == pytest.approx(50.0)
    assert res.joint_count[0] == 2


def test_decoding_a_nan_heatmap_gives_nan_not_a_confident_origin():
    hm = torch.zeros(1, 3, 8, 8)
    hm[0, 0] = float("nan")
    hm[0, 1, 3, 4] = float("inf")
    hm[0, 2, 5, 6] = 1.0
    for fn in (decode_heatmaps, get_max_preds):
        xy, s = fn(hm)
        assert torch.isnan(xy[0, :2]).all() and torch.isnan(s[0, :2]).all()
        assert xy[0, 2].tolist() == [6.0, 5.0] and s[0, 2] == 1.0
    xy, s = decode_heatmaps(hm.numpy())  # numpy in, numpy out, same rule
    assert np.isnan(xy[0, 0]).all() and np.isnan(s[0, 0])


@needs_shared
def test_coco_nan_keypoints_are_counted_misses_and_valid_json():
    from posenfs_cli.evaluation.coco_eval import MISS_XY

    gt = json.loads(COCO_JSON.read_text())
    ds = COCODataset(coco_from_dict(copy.deepcopy(gt)), IMAGES, ann_name="t", **KW)
    preds = gt_as_predictions(ds)
    broken = copy.deepcopy(preds)
    broken.coords[0] = np.nan  # one person entirely NaN
    broken.coords[1, 0] = np.nan  # one joint of another person
    broken.scores[1, 0] = np.nan
    metrics = score(broken, COCO, ds)
    assert metrics["non_finite_keypoints"] == 18
    json.dumps(metrics["coco_results"], allow_nan=False)  # raises on NaN
    # oracle: the same results with the broken joints put far away, scored by COCOeval
    far = copy.deepcopy(preds)
    far.coords[0] = MISS_XY
    far.coords[1, 0] = MISS_XY
    far.scores[0] = 0.0
    far.scores[1, 0] = 0.0
    expect = score(far, COCO, ds)
    assert metrics["ap"] == pytest.approx(expect["ap"], abs=1e-12)
    assert metrics["ar"] == pytest.approx(expect["ar"], abs=1e-12)
    assert metrics["ar"] < 1.0  # the NaN person is a miss, not a match


def test_build_results_sanitises_non_finite_keypoints():
    from posenfs_cli.evaluation.coco_eval import MISS_XY, count_non_finite

    kp = np.array([[[1.0, 2.0, 0.9], [np.nan, 3.0, 0.8], [4.0, 5.0, np.inf]]])
    assert count_non_finite(kp) == 2
    (res,) = build_results([7], kp, [1.0], [100.0], sigmas=[0.1, 0.1, 0.1])
    assert res["keypoints"] == [1.0, 2.0, 0.9, MISS_XY, MISS_XY, 0.0, MISS_XY, MISS_XY, 0.0]
    assert res["score"] == pytest.approx(0.9)  # mean of the finite scores above 0.2


# --- 3. / 4. annotation files as people have them -------------------------------------------
@needs_shared
def test_coco_file_with_extra_keypoint_names_is_accepted_with_a_note():
    gt = json.loads(COCO_JSON.read_text())
    gt["categories"][0]["keypoints"] += ["head", "neck", "hip", "left_big_toe"]
    notes: list[str] = []
    rec = parse_coco_records(coco_from_dict(gt), "f.json", 0.75, COCO, notes)
    assert len(rec) == 12  # as with the plain file (2 annotations have no keypoint)
    assert len(notes) == 1 and "21 keypoint names" in notes[0] and "first 17" in notes[0]


@needs_shared
def test_coco_file_with_other_keypoint_count_names_the_count():
    gt = json.loads(COCO_JSON.read_text())
    gt["annotations"][0]["keypoints"] = [0] * (136 * 3)
    with pytest.raises(PosenfsError, match=r"408 keypoint values \(136 keypoints\), expected 51"):
        parse_coco_records(coco_from_dict(gt), "f.json", 0.75)


@needs_shared
def test_coco_annotations_without_area_use_the_box_area():
    gt = json.loads(COCO_JSON.read_text())
    for a in gt["annotations"]:
        del a["area"]
    coco = coco_from_dict(gt)
    ds = COCODataset(coco, IMAGES, ann_name="f.json", **KW)
    assert len(ds) == 12  # as with areas
    assert any("14 annotation(s) have no 'area'" in n for n in ds.notes)
    a0 = coco.anns[gt["annotations"][0]["id"]]
    assert a0["area"] == pytest.approx(a0["bbox"][2] * a0["bbox"][3])  # COCOeval reads it too


def test_coco_filters_that_empty_the_set_are_named_with_counts():
    images = [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}]
    kp = [10, 10, 2] + [0] * 48
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 1, "area": 5, "bbox": [0, 0, 5, 5]},
        {"id": 2, "image_id": 1, "category_id": 1, "area": 0, "bbox": [0, 0, 5, 5]},
        {"id": 3, "image_id": 1, "category_id": 1, "area": 9, "bbox": [500, 0, 5, 5]},
        {"id": 4, "image_id": 1, "category_id": 1, "area": 9, "bbox": [5, 5, 1, 1]},
        {"id": 5, "image_id": 1, "category_id": 1, "area": 9, "bbox": [5, 5, 9, 9]},
    ]
    for a in anns:
        a["keypoints"] = list(kp)
    anns[4]["keypoints"] = [0] * 51
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    with pytest.raises(PosenfsError) as err:
        parse_coco_records(coco_from_dict(data), "f.json", 0.75)
    msg = str(err.value)
    assert "all 5 person annotation(s) were filtered out" in msg
    assert "iscrowd: 1" in msg and "area <= 0: 1" in msg
    assert "box outside the image or empty: 2" in msg and "no labelled keypoint: 1" in msg


def test_coco_image_without_file_name_is_one_clear_error():
    data = {
        "images": [{"id": 1, "width": 100, "height": 100}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "area": 100,
                "bbox": [5, 5, 10, 10],
                "keypoints": [10, 10, 2] + [0] * 48,
            }
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    with pytest.raises(PosenfsError, match="image record id 1 has no 'file_name'"):
        parse_coco_records(coco_from_dict(copy.deepcopy(data)), "f.json", 0.75)
    dets = [{"image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10], "score": 0.9}]
    with pytest.raises(PosenfsError, match="no 'file_name'"):
        COCODataset(coco_from_dict(data), IMAGES, ann_name="f.json", detections=dets, **KW)


def test_zero_size_detections_are_skipped_with_a_count():
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
        "annotations": [],
        "categories": [{"id": 1, "name": "person"}],
    }
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 0], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 0], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [90, 5, 30, 10], "score": 0.8},
        {"image_id": 2, "category_id": 1, "bbox": [9, 5, 30, 10], "score": 0.8},
    ]
    ds = COCODataset(coco_from_dict(data), IMAGES, ann_name="f.json", detections=dets, **KW)
    assert len(ds) == 1 and float(ds.records.scales.min()) > 0
    assert any("skipped 2 detection(s) of zero size" in n for n in ds.notes)
    assert any("1 detection box(es) reach outside" in n for n in ds.notes)
    assert any("1 detection(s) name an image_id that is not in" in n for n in ds.notes)


# --- 6. head boxes from a file ----------------------------------------------------------------
def test_load_headboxes_json_and_mat_agree(tmp_path):
    from scipy.io import savemat

    from posenfs_cli.data.mpii import load_headboxes

    boxes = np.array([[11.0, 21.0, 31.0, 41.0], [5.0, 6.0, 7.0, 8.0]])  # 1-based x1 y1 x2 y2
    (tmp_path / "hb.json").write_text(json.dumps(boxes.tolist()))
    (tmp_path / "hb2.json").write_text(json.dumps({"headboxes": boxes.tolist()}))
    savemat(str(tmp_path / "gt.mat"), {"headboxes_src": np.stack([boxes[:, :2].T, boxes[:, 2:].T])})
    for name in ("hb.json", "hb2.json", "gt.mat"):
        np.testing.assert_allclose(load_headboxes(tmp_path / name), boxes - 1.0)
    (tmp_path / "bad.json").write_text(json.dumps([[1, 2, 3]]))
    with pytest.raises(PosenfsError, match="headbox"):
        load_headboxes(tmp_path / "bad.json")
    with pytest.raises(PosenfsError, match="not found"):
        load_headboxes(tmp_path / "nope.mat")


@needs_shared
def test_mpii_head_box_count_must_match_records(tmp_path):
    (tmp_path / "hb.json").write_text(json.dumps([[1, 1, 9, 9]] * 3))
    with pytest.raises(PosenfsError, match="5 records but 3 head boxes"):
        MPIIDataset.from_files(
            SHARED_DATA / "mpii/test_mpii.json",
            SHARED_DATA / "mpii",
            headbox_file=tmp_path / "hb.json",
            **KW,
        )


# --- nothing readable ---------------------------------------------------------------------------
def test_unreadable_count_fails_when_nothing_could_be_scored():
    from posenfs_cli.evaluation.evaluator import unreadable_count

    meta = {"valid": np.array([False, True, False])}
    p = Predictions(np.zeros((3, 17, 2)), np.zeros((3, 17)), meta)
    assert unreadable_count(p) == 2
    meta = {"valid": np.zeros(3, bool)}
    with pytest.raises(PosenfsError, match="nothing was scored"):
        unreadable_count(Predictions(np.zeros((3, 17, 2)), np.zeros((3, 17)), meta))
