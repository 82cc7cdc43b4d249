"""Predictor geometry (crop -> heatmap -> image), batching, box sources and frame sources."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from posenfs_cli.data.affine import affine_points, box_to_center_scale, get_affine_transform
from posenfs_cli.data.layouts import MPII, KeypointLayout
from posenfs_cli.errors import PosenfsError
from posenfs_cli.inference.detectors import (
    BoxesFile,
    HOGDetector,
    WholeImage,
    clip_boxes,
    hog_available,
)
from posenfs_cli.inference.predictor import Instance, Predictor
from posenfs_cli.inference.sources import Frame, open_source

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def gaussian_maps(n: int, peaks: np.ndarray, h: int, w: int, sigma: float = 1.0) -> torch.Tensor:
    """[n, K, h, w] Gaussians centred on integer ``peaks`` [K, 2] (x, y), same for every sample."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    p = torch.as_tensor(peaks, dtype=torch.float32)
    d2 = (xs[None] - p[:, 0, None, None]) ** 2 + (ys[None] - p[:, 1, None, None]) ** 2
    return torch.exp(-d2 / (2 * sigma**2)).expand(n, -1, -1, -1).clone()


class FixedPeaks(nn.Module):
    """Ignores its input: joint k peaks at ``peaks[k]`` on an (H/4, W/4) heatmap."""

    def __init__(self, peaks: np.ndarray):
        super().__init__()
        self.peaks = peaks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_maps(x.shape[0], self.peaks, x.shape[2] // 4, x.shape[3] // 4)


class BrightestPixel(nn.Module):
    """Every joint peaks where the input is brightest: probes crop content and its geometry."""

    def __init__(self, num_joints: int):
        super().__init__()
        self.k = num_joints

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        flat = x.sum(1).reshape(n, -1).argmax(1)
        iy, ix = flat // w, flat % w
        hy, hx = (iy.float() / 4).round(), (ix.float() / 4).round()
        ys, xs = torch.meshgrid(torch.arange(h // 4), torch.arange(w // 4), indexing="ij")
        d2 = (xs[None] - hx[:, None, None]) ** 2 + (ys[None] - hy[:, None, None]) ** 2
        return torch.exp(-d2 / 2.0)[:, None].expand(n, self.k, -1, -1).contiguous()


INPUT_HW = (64, 48)  # non-square on purpose: the aspect padding must be right
BOXES = np.array(
    [
        [10.0, 20.0, 60.0, 140.0],  # tall
        [100.0, 30.0, 260.0, 90.0],  # wide
        [5.5, 7.25, 40.0, 50.0],
        [200.0, 150.0, 230.0, 235.0],
        [0.0, 0.0, 300.0, 240.0],  # whole image
    ]
)


def expected_coords(peaks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Independent reference: inverse affine of the heatmap peak for each box."""
    h, w = INPUT_HW
    out = []
    for x1, y1, x2, y2 in boxes:
        c, s = box_to_center_scale(x1, y1, x2 - x1, y2 - y1, w / h, 1.25)
        inv = get_affine_transform(c, s, 0.0, (w // 4, h // 4), inverse=True)
        out.append(affine_points(peaks, inv))
    return np.stack(out)


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (240, 300, 3), dtype=np.uint8)


def test_keypoints_map_back_through_inverse_affine(image):
    k = MPII.num_joints
    rng = np.random.default_rng(1)
    # peaks strictly inside the 12x16 heatmap so the quarter offset sees equal neighbours
    peaks = np.stack([rng.integers(1, 11, k), rng.integers(1, 15, k)], 1).astype(np.float64)
    pred = Predictor(FixedPeaks(peaks), MPII, INPUT_HW, flip=False, batch_size=2)
    scores = np.linspace(0.9, 0.5, len(BOXES))
    instances = pred.predict_boxes(image, BOXES, scores)  # 5 boxes, chunks of 2
    assert len(instances) == len(BOXES)
    got = np.stack([inst.keypoints for inst in instances])
    np.testing.assert_allclose(got, expected_coords(peaks, BOXES), atol=0.5)
    for inst, box, s in zip(instances, BOXES, scores, strict=True):
        np.testing.assert_array_equal(inst.bbox, box)
        assert inst.bbox_score == pytest.approx(s)
        np.testing.assert_allclose(inst.keypoint_scores, 1.0, atol=1e-6)


def test_flip_test_keeps_mirror_symmetric_peaks(image):
    """A model whose maps are mirror-consistent must decode to the same place with flip on."""
    layout = KeypointLayout("sym", ("left_a", "right_a", "mid"), ((0, 1),), ())
    hm_w = 13  # odd heatmap width -> a true centre column for the unpaired joint
    peaks = np.array([[3.0, 5.0], [hm_w - 1 - 3.0, 5.0], [(hm_w - 1) / 2, 9.0]])
    size = (64, hm_w * 4)
    pred = Predictor(FixedPeaks(peaks), layout, size, flip=True, flip_shift=False)
    inst = pred.predict_boxes(image, BOXES[:3], np.ones(3))
    got = np.stack([i.keypoints for i in inst])
    ref = []
    for x1, y1, x2, y2 in BOXES[:3]:
        c, s = box_to_center_scale(x1, y1, x2 - x1, y2 - y1, size[1] / size[0], 1.25)
        ref.append(affine_points(peaks, get_affine_transform(c, s, 0, (hm_w, 16), inverse=True)))
    np.testing.assert_allclose(got, np.stack(ref), atol=0.5)


def test_crop_content_and_flip_end_to_end():
    """A bright dot in each box is found where it is (crop, BGR->RGB, flip, inverse map)."""
    img = np.zeros((200, 320, 3), np.uint8)
    boxes = np.array([[20.0, 20.0, 100.0, 180.0], [150.0, 40.0, 300.0, 120.0]])
    dots = np.array([[47, 91], [233, 77]])
    for x, y in dots:
        cv2.circle(img, (int(x), int(y)), 1, (255, 255, 255), -1)
    for flip in (False, True):
        pred = Predictor(BrightestPixel(MPII.num_joints), MPII, INPUT_HW, flip=flip)
        inst = pred.predict_boxes(img, boxes, np.ones(2))
        for i, (x, y) in zip(inst, dots, strict=True):
            _, s = box_to_center_scale(*i.bbox[:2], *(i.bbox[2:] - i.bbox[:2]), 0.75, 1.25)
            hm_px = s[0] * 200 / (INPUT_HW[1] // 4)  # one heatmap pixel in image pixels
            err = np.abs(i.keypoints - [x, y]).max()
            assert err <= 1.0 * hm_px, (flip, err, hm_px)


class InputProbe(FixedPeaks):
    """Records what the network is fed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.clone()
        return super().forward(x)


def test_network_input_is_normalised_rgb_crop():
    img = np.zeros((100, 100, 3), np.uint8)
    img[..., 0] = 255  # pure blue in BGR
    probe = InputProbe(np.ones((MPII.num_joints, 2)))
    pred = Predictor(probe, MPII, INPUT_HW, flip=False)
    pred.predict_boxes(img, np.array([[30.0, 20.0, 60.0, 80.0]]), np.ones(1))
    x = probe.seen
    assert tuple(x.shape) == (1, 3, *INPUT_HW)
    centre = x[0, :, INPUT_HW[0] // 2, INPUT_HW[1] // 2]
    expect = (torch.tensor([0.0, 0.0, 1.0]) - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor(
        [0.229, 0.224, 0.225]
    )
    torch.testing.assert_close(centre, expect, atol=1e-4, rtol=0)


def test_predict_many_batches_across_images_like_single_calls(image):
    peaks = np.tile([[5.0, 7.0]], (MPII.num_joints, 1))
    pred = Predictor(FixedPeaks(peaks), MPII, INPUT_HW, flip=True, batch_size=3)
    imgs = [image, image[:100, :120], image]
    boxes = [BOXES[:2], np.zeros((0, 4)), BOXES[2:]]
    scores = [np.ones(2), np.zeros(0), np.ones(3)]
    many = pred.predict_many(imgs, boxes, scores)
    assert [len(m) for m in many] == [2, 0, 3]
    for img, b, s, got in zip(imgs, boxes, scores, many, strict=True):
        single = pred.predict_boxes(img, b, s)
        for a, c in zip(single, got, strict=True):
            np.testing.assert_allclose(a.keypoints, c.keypoints)
    assert pred.predict_boxes(image, np.zeros((0, 4)), np.zeros(0)) == []


def test_instance_json_schema(image):
    pred = Predictor(FixedPeaks(np.ones((MPII.num_joints, 2))), MPII, INPUT_HW, flip=False)
    rec = json.loads(json.dumps(pred.predict_boxes(image, BOXES[:1], np.ones(1))[0].to_dict()))
    assert set(rec) == {"bbox", "bbox_score", "keypoints", "keypoint_scores"}
    assert len(rec["bbox"]) == 4 and len(rec["keypoints"]) == MPII.num_joints
    assert all(len(p) == 2 for p in rec["keypoints"])
    assert len(rec["keypoint_scores"]) == MPII.num_joints


def test_boxes_file_matches_coco_names_and_mapping(tmp_path):
    dets = [
        {"image_id": 785, "category_id": 1, "bbox": [10, 20, 30, 40], "score": 0.9},
        {"image_id": 785, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.1},
        {"image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.95},
        {"image_id": 7, "category_id": 2, "bbox": [1, 2, 3, 4], "score": 0.99},
    ]
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets))
    src = BoxesFile(path, score_thr=0.3, mapping={"holiday.png": 7})
    img = np.zeros((100, 100, 3), np.uint8)  # holds every box (outside ones are clipped)
    b, s = src.boxes(img, Frame(0, "x", img, tmp_path / "000000000785.jpg"))
    np.testing.assert_allclose(b, [[10, 20, 40, 60]])
    np.testing.assert_allclose(s, [0.9])
    b, s = src.boxes(img, Frame(0, "x", img, tmp_path / "holiday.png"))
    np.testing.assert_allclose(b, [[1, 2, 4, 6]])  # category 2 dropped
    assert src.boxes(img, Frame(0, "x", img, tmp_path / "000000000001.jpg"))[0].shape == (0, 4)
    with pytest.raises(PosenfsError, match="cannot match image"):
        src.boxes(img, Frame(0, "x", img, tmp_path / "beach.jpg"))
    path.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(PosenfsError, match="dets.json"):
        BoxesFile(path)


def test_boxes_file_clips_to_the_image_and_drops_empty_boxes(tmp_path):
    dets = [
        {"image_id": 785, "category_id": 1, "bbox": [-10, 5, 30, 1e12], "score": 0.9},
        {"image_id": 785, "category_id": 1, "bbox": [200, 5, 10, 10], "score": 0.8},
        {"image_id": 785, "category_id": 1, "bbox": [5, 5, 0, 10], "score": 0.7},
        {"image_id": 785, "category_id": 1, "bbox": [5, 5, 10, 10], "score": 0.6},
    ]
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets))
    src = BoxesFile(path)
    img = np.zeros((50, 100, 3), np.uint8)
    b, s = src.boxes(img, Frame(0, "x", img, tmp_path / "000000000785.jpg"))
    # first box clipped to x 0..20, y 5..50; the outside and the zero-width one dropped
    np.testing.assert_allclose(b, [[0, 5, 20, 50], [5, 5, 15, 15]])
    np.testing.assert_allclose(s, [0.9, 0.6])
    assert (src.clipped, src.dropped, src.matched_frames) == (1, 2, 1)


def test_clip_boxes_counts_only_changed_kept_boxes():
    boxes, keep, changed = clip_boxes(np.array([[1, 1, 5, 5], [-3, 0, 4, 4], [7, 7, 7, 9]]), 6, 6)
    np.testing.assert_allclose(boxes[0], [1, 1, 5, 5])
    np.testing.assert_allclose(boxes[1], [0, 0, 4, 4])
    assert keep.tolist() == [True, True, False] and changed == 1


def test_instance_json_is_valid_with_nan_and_carries_image_id():
    inst = Instance(
        np.array([0.0, 0.0, 10.0, 10.0]),
        0.9,
        np.array([[1.0, np.nan], [2.0, 3.0]]),
        np.array([np.inf, 0.5]),
        image_id=785,
    )
    text = json.dumps(inst.to_dict(), allow_nan=False)  # raises on a bare NaN
    back = json.loads(text)
    assert back["image_id"] == 785
    assert back["keypoints"] == [[1.0, None], [2.0, 3.0]]
    assert back["keypoint_scores"] == [None, 0.5]
    assert inst.non_finite == 1


def test_whole_image_box():
    img = np.full((300, 200, 3), 127, np.uint8)
    b, s = WholeImage().boxes(img, Frame(0, "x", img))
    np.testing.assert_array_equal(b, [[0, 0, 200, 300]])
    np.testing.assert_array_equal(s, [1.0])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [len(a), len(b)] of xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=-1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=-1)
    return inter / (area_a[:, None] + area_b[None] - inter)


@pytest.mark.skipif(not hog_available(), reason=f"OpenCV {cv2.__version__} has no HOGDescriptor")
def test_hog_finds_real_people():
    """On the real COCO photos every HOG box sits on an annotated person, and some fit well."""
    coco = SHARED_DATA / "coco"
    if not (coco / "test_coco.json").is_file():
        pytest.skip(f"real samples not found at {SHARED_DATA}")
    ann = json.loads((coco / "test_coco.json").read_text())
    det = HOGDetector()
    best = []
    for im in ann["images"]:
        img = cv2.imread(str(coco / im["file_name"]))
        gt = np.array([a["bbox"] for a in ann["annotations"] if a["image_id"] == im["id"]])
        gt[:, 2:] += gt[:, :2]
        b, s = det.boxes(img, Frame(0, "x", img))
        assert b.shape == (len(s), 4) and np.all(np.diff(s) <= 0) and np.all((s > 0) & (s < 1))
        if len(b):
            best.extend(box_iou(b, gt).max(axis=1))
    assert len(best) >= 2 and min(best) > 0.2 and sorted(best)[-2] > 0.5, best
    flat = np.full((300, 200, 3), 127, np.uint8)
    assert det.boxes(flat, Frame(0, "x", flat))[0].shape == (0, 4)


def test_sources_folder_skips_corrupt_and_errors_are_clear(tmp_path):
    good = np.zeros((20, 30, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "a.jpg"), good)
    cv2.imwrite(str(tmp_path / "c.png"), good)
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    frames = list(open_source(tmp_path))
    assert [f.name for f in frames] == ["a", "b", "c"]
    assert [f.image is None for f in frames] == [False, True, False]
    assert "b.jpg" in (frames[1].error or "")
    with pytest.raises(PosenfsError, match="b.jpg"):
        open_source(tmp_path / "b.jpg")
    with pytest.raises(PosenfsError, match="does not exist"):
        open_source(tmp_path / "missing.jpg")
    (tmp_path / "v.mp4").write_bytes(b"\x00" * 64)
    with pytest.raises(PosenfsError, match="v.mp4"):
        open_source(tmp_path / "v.mp4")
    assert len(list(open_source(tmp_path, max_frames=2))) == 2
