"""CrowdPose-14 end to end: a hand-made CrowdPose-style folder, one training epoch, `posenfs
eval`, and COCO-style AP with CrowdPose's sigmas checked against pycocotools and by hand."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from posenfs_cli.cli.app import app
from posenfs_cli.config import DataConfig
from posenfs_cli.data.build import build_dataset
from posenfs_cli.data.coco import coco_from_dict
from posenfs_cli.data.layouts import CROWDPOSE
from posenfs_cli.errors import PosenfsError
from posenfs_cli.evaluation.coco_eval import evaluate_coco
from tests.conftest import RECIPES

runner = CliRunner()
STATS = ("ap", "ap50", "ap75", "apm", "apl", "ar", "ar50", "ar75", "arm", "arl")
# CrowdPose's evaluation tool writes its sigmas this way; the layout must match it exactly.
CROWDPOSE_SIGMAS = (
    np.array([0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89, 0.79, 0.79])
    / 10.0
)

# One standing person in a unit box (x right, y down), CrowdPose order.
UNIT_POSE = np.array(
    [
        [0.65, 0.25],  # left_shoulder (the person faces us: left is on the image right)
        [0.35, 0.25],  # right_shoulder
        [0.75, 0.42],  # left_elbow
        [0.25, 0.42],  # right_elbow
        [0.78, 0.58],  # left_wrist
        [0.22, 0.58],  # right_wrist
        [0.60, 0.55],  # left_hip
        [0.40, 0.55],  # right_hip
        [0.62, 0.75],  # left_knee
        [0.38, 0.75],  # right_knee
        [0.63, 0.95],  # left_ankle
        [0.37, 0.95],  # right_ankle
        [0.50, 0.05],  # head (top)
        [0.50, 0.18],  # neck
    ]
)


def person(ann_id: int, image_id: int, box: tuple[float, float, float, float], hidden=()) -> dict:
    """A CrowdPose-style annotation: 14 × [x, y, v], num_keypoints, no 'area' (as shipped)."""
    x, y, w, h = box
    kps = []
    for j, (u, v) in enumerate(UNIT_POSE):
        kps += [0, 0, 0] if j in hidden else [round(x + u * w, 2), round(y + v * h, 2), 2]
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "iscrowd": 0,
        "bbox": [x, y, w, h],
        "keypoints": kps,
        "num_keypoints": 14 - len(hidden),
    }


def crowdpose_json(images: list[tuple[int, list[tuple[float, float, float, float]]]]) -> dict:
    names = list(CROWDPOSE.names)
    out: dict = {
        "images": [],
        "annotations": [],
        "categories": [
            {
                "supercategory": "person",
                "id": 1,
                "name": "person",
                "keypoints": names,
                "skeleton": [[a + 1, b + 1] for a, b in CROWDPOSE.skeleton],
            }
        ],
    }
    ann_id = 1
    for image_id, boxes in images:
        out["images"].append(
            {
                "id": image_id,
                "file_name": f"{image_id}.jpg",
                "width": 128,
                "height": 128,
                "crowdIndex": 0.1 * (len(boxes) - 1),
            }
        )
        for box in boxes:
            out["annotations"].append(person(ann_id, image_id, box, hidden=(3,) * (ann_id % 2)))
            ann_id += 1
    return out


def draw(gt: dict, image_dir) -> None:
    """A grey JPEG per image with each person's skeleton drawn, so the model sees something."""
    image_dir.mkdir(parents=True, exist_ok=True)
    for img in gt["images"]:
        canvas = np.full((img["height"], img["width"], 3), 90, np.uint8)
        for a in gt["annotations"]:
            if a["image_id"] == img["id"]:
                pts = np.array(a["keypoints"], dtype=np.float64).reshape(-1, 3)
                for i, j in CROWDPOSE.skeleton:
                    if pts[i, 2] > 0 and pts[j, 2] > 0:
                        p, q = pts[i, :2].astype(int), pts[j, :2].astype(int)
                        cv2.line(canvas, tuple(map(int, p)), tuple(map(int, q)), (230, 200, 40), 3)
        cv2.imwrite(str(image_dir / img["file_name"]), canvas)


@pytest.fixture(scope="module")
def crowdpose_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("crowdpose")
    splits = {
        "train": [
            (100, [(20, 10, 50, 100)]),
            (101, [(10, 20, 40, 90), (70, 15, 45, 100)]),
            (102, [(40, 5, 60, 115)]),
            (103, [(5, 30, 35, 80), (60, 30, 35, 80)]),
        ],
        "val": [(200, [(30, 10, 55, 110)]), (201, [(8, 12, 45, 100), (68, 20, 45, 95)])],
    }
    for split, images in splits.items():
        gt = crowdpose_json(images)
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"crowdpose_{split}.json").write_text(json.dumps(gt))
        draw(gt, root / "images")
    return root


def with_box_areas(gt: dict) -> dict:
    """The oracle's GT: 'area' = box w·h, what the loader fills in for COCOeval."""
    out = copy.deepcopy(gt)
    for a in out["annotations"]:
        a["area"] = a["bbox"][2] * a["bbox"][3]
    return out


def cocoeval_direct(gt: dict, results: list[dict]) -> dict[str, float]:
    """pycocotools' COCOeval straight from the files, with CrowdPose's sigmas."""
    from pycocotools.coco import COCO as CocoApi
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = CocoApi()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), "keypoints")
        ev.params.kpt_oks_sigmas = CROWDPOSE_SIGMAS
        ev.params.imgIds = sorted(coco.getImgIds())
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(STATS, map(float, ev.stats), strict=True))


def test_loader_reads_the_crowdpose_layout(crowdpose_root):
    cfg = DataConfig(dataset="crowdpose", keypoints="crowdpose", root=str(crowdpose_root))
    cfg.input_size = [64, 32]
    train = build_dataset(cfg, "train", train=True)
    val = build_dataset(cfg, "val", train=False)  # 'valid' (the default val split) reads val
    assert train.layout is CROWDPOSE and len(train) == 6 and len(val) == 3
    image, target, weight, meta = val[0]
    assert tuple(image.shape) == (3, 64, 32) and target.shape[0] == 14
    assert meta["joints"].shape == (14, 3)
    assert any("no 'area'" in n for n in val.notes)
    image, target, weight, meta = train[1]  # augmented (half-body, flip) without error
    assert target.shape[0] == 14 and weight.shape[0] == 14


def test_dataset_and_keypoints_must_agree(crowdpose_root):
    cfg = DataConfig(dataset="crowdpose", keypoints="coco", root=str(crowdpose_root))
    with pytest.raises(PosenfsError, match="set data.keypoints=crowdpose"):
        build_dataset(cfg, "val", train=False)
    cfg = DataConfig(dataset="crowdpose", keypoints="crowdpose", root=str(crowdpose_root / "x"))
    with pytest.raises(PosenfsError, match="crowdpose_<split>.json"):
        build_dataset(cfg, "val", train=False)


def noisy_gt(monkeypatch) -> None:
    """The (barely trained) model's predictions become GT + noise, so AP is neither 0 nor 1;
    everything after the forward pass (mapping, NMS, results file, COCOeval) runs for real."""
    import posenfs_cli.evaluation.evaluator as evaluator

    real = evaluator.predict

    def predict(*args, **kwargs):
        p = real(*args, **kwargs)
        rng = np.random.default_rng(0)
        joints = p.meta["joints"]
        size = p.meta["scale"][:, 1, None, None] * 200.0
        p.coords = joints[..., :2] + rng.normal(0.0, 0.04, joints[..., :2].shape) * size
        p.scores = np.where(joints[..., 2] > 0, rng.uniform(0.3, 1.0, p.scores.shape), 0.1)
        return p

    monkeypatch.setattr(evaluator, "predict", predict)


def test_train_then_eval_end_to_end(crowdpose_root, tmp_path, monkeypatch):
    project = tmp_path / "runs"
    trained = runner.invoke(
        app,
        [
            "--device",
            "cpu",
            "train",
            "--recipe",
            str(RECIPES / "synthetic/tiny.yaml"),
            "--dataset",
            "crowdpose",
            "--data-root",
            str(crowdpose_root),
            "--set",
            "data.keypoints=crowdpose",
            "--input-size",
            "64x64",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--workers",
            "0",
            "--project",
            str(project),
            "--no-progress",
        ],
    )
    assert trained.exit_code == 0, trained.output
    ckpt = project / "train" / "exp" / "best.safetensors"
    assert ckpt.is_file(), trained.output

    noisy_gt(monkeypatch)
    gt = json.loads((crowdpose_root / "annotations" / "crowdpose_val.json").read_text())
    for extra in ([], ["--ann-file", crowdpose_root / "annotations" / "crowdpose_val.json"]):
        if extra:
            extra += ["--image-dir", crowdpose_root / "images"]
        res = runner.invoke(
            app,
            ["--device", "cpu", "eval", str(ckpt), "--workers", "0", "--project", str(project)]
            + ["--name", f"e{len(extra)}"]
            + [str(a) for a in extra],
        )
        assert res.exit_code == 0, res.output
        run = project / "eval" / f"e{len(extra)}"
        summary = json.loads((run / "metrics.json").read_text())
        results = json.loads((run / "keypoints_results.json").read_text())
        assert results and all(len(r["keypoints"]) == 3 * 14 for r in results)
        direct = cocoeval_direct(with_box_areas(gt), results)
        for k in STATS:
            assert summary[k] == pytest.approx(direct[k], abs=1e-12), k
        assert 0.0 < summary["ap"] < 1.0


def _predict(gt: dict, offsets: np.ndarray | None = None) -> list[dict]:
    """GT keypoints as results (score 1), moved by ``offsets`` [K] pixels along x."""
    out = []
    for a in gt["annotations"]:
        kp = np.array(a["keypoints"], dtype=np.float64).reshape(-1, 3)
        kp[:, 2] = 1.0
        if offsets is not None:
            kp[:, 0] += offsets
        flat = kp.ravel().tolist()
        out.append({"image_id": a["image_id"], "category_id": 1, "keypoints": flat, "score": 1.0})
    return out


def test_perfect_predictions_give_ap_one():
    gt = with_box_areas(
        crowdpose_json([(1, [(10, 10, 50, 100)]), (2, [(5, 5, 40, 90), (70, 8, 45, 95)])])
    )
    stats = evaluate_coco(coco_from_dict(gt), _predict(gt), sigmas=CROWDPOSE.sigmas)
    assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0)
    assert stats["AP75"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)


def test_hand_computed_oks():
    """Every joint moved so exp(-d² / (2·area·(2σ)²)) = 0.72: OKS = 0.72 for the one person.

    Of the thresholds 0.50, 0.55, …, 0.95 it passes the first five: AP = 0.5, AP50 = 1,
    AP75 = 0. COCO's own face sigmas would not even fit the 14 joints.
    """
    w, h = 60.0, 100.0
    gt = with_box_areas(crowdpose_json([(1, [(20, 10, w, h)])]))
    area = w * h
    k2 = (2.0 * np.asarray(CROWDPOSE.sigmas)) ** 2
    d = np.sqrt(-2.0 * area * k2 * math.log(0.72))
    stats = evaluate_coco(coco_from_dict(gt), _predict(gt, d), sigmas=CROWDPOSE.sigmas)
    assert stats["AP"] == pytest.approx(0.5)
    assert stats["AP50"] == pytest.approx(1.0) and stats["AP75"] == pytest.approx(0.0)
    with pytest.raises(PosenfsError, match="14 keypoints but 17 OKS sigmas"):
        evaluate_coco(coco_from_dict(gt), _predict(gt, d))


def test_layout_sigmas_are_crowdposes():
    assert np.array_equal(np.asarray(CROWDPOSE.sigmas), CROWDPOSE_SIGMAS)
