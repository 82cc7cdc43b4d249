"""The real MPII and COCO samples in ../shared/data load, crop and target correctly."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from posenfs_cli.data.affine import affine_points
from posenfs_cli.data.coco import COCODataset
from posenfs_cli.data.mpii import MPIIDataset
from posenfs_cli.data.transforms import crop_matrix, warp_crop

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not (SHARED / "mpii" / "test_mpii.json").is_file()
    or not (SHARED / "coco" / "test_coco.json").is_file(),
    reason=f"real samples not found at {SHARED} (read-only test data outside the repo)",
)


@pytest.fixture(scope="module")
def mpii():
    return MPIIDataset.from_files(
        SHARED / "mpii" / "test_mpii.json", SHARED / "mpii", input_size=(256, 256), sigma=2.0
    )


@pytest.fixture(scope="module")
def coco():
    return COCODataset.from_files(
        SHARED / "coco" / "test_coco.json", SHARED / "coco", input_size=(256, 192), sigma=2.0
    )


def check_crop_round_trip(ds, index: int) -> None:
    """Dots drawn at the GT joints land on the cropped joints (forward), the cropped joints map
    back onto the GT (inverse), both within 0.5 px, and each target peaks on its joint."""
    s = ds.get_sample(index)
    meta = s.meta
    h_in, w_in = ds.input_size
    vis = meta["joints"][:, 2] > 0
    img = ds.source.load(ds.records.images[index])
    m = crop_matrix(meta["center"], meta["scale"], float(meta["rotation"]), (w_in, h_in))
    inv = crop_matrix(
        meta["center"], meta["scale"], float(meta["rotation"]), (w_in, h_in), inverse=True
    )
    ys, xs = np.mgrid[0:h_in, 0:w_in]
    checked = 0
    radius = 12.0
    zoom = w_in / (float(meta["scale"][0]) * 200.0)
    h_img, w_img = img.shape[:2]
    for k in np.flatnonzero(vis & (s.target_weight[:, 0] > 0)):
        x, y = meta["joints"][k, :2]
        jx, jy = s.joints_input[k, :2]
        r_in = radius * zoom + 1
        if (
            min(x, y, w_img - 1 - x, h_img - 1 - y) < radius + 1
            or min(jx, jy, w_in - 1 - jx, h_in - 1 - jy) < r_in
        ):
            continue  # the dot would be cut by the image or crop border: centroid biased
        canvas = np.zeros(img.shape[:2], np.float32)
        centre = (int(round(x * 16)), int(round(y * 16)))
        cv2.circle(canvas, centre, int(radius * 16), 1.0, -1, cv2.LINE_AA, 4)
        crop = warp_crop(canvas, m, (w_in, h_in))
        cx, cy = (crop * xs).sum() / crop.sum(), (crop * ys).sum() / crop.sum()
        assert abs(cx - jx) < 0.5 and abs(cy - jy) < 0.5, (index, k, (cx, cy), (jx, jy))
        back = affine_points(s.joints_input[k : k + 1, :2], inv)[0]
        assert np.abs(back - [x, y]).max() < 0.5
        peak = np.unravel_index(np.argmax(s.target[k]), s.target[k].shape)
        assert peak == (int(np.floor(jy / 4 + 0.5)), int(np.floor(jx / 4 + 0.5)))
        checked += 1
    assert checked >= 5


@needs_shared
def test_mpii_samples_load(mpii):
    raw = json.loads((SHARED / "mpii" / "test_mpii.json").read_text())
    assert len(mpii) == len(raw) == 5
    assert mpii.num_joints == 16 and mpii.heatmap_size == (64, 64)
    for i, r in enumerate(raw):
        vis = np.asarray(r["joints_vis"]) > 0
        j = mpii.records.joints[i]
        np.testing.assert_allclose(j[vis, :2], np.asarray(r["joints"])[vis] - 1.0, atol=1e-4)
        assert (j[~vis] == 0).all()
        s = r["scale"]
        np.testing.assert_allclose(
            mpii.records.centers[i], [r["center"][0] - 1, r["center"][1] + 15 * s - 1], rtol=1e-6
        )
        np.testing.assert_allclose(mpii.records.scales[i], [s * 1.25] * 2, rtol=1e-6)
    assert mpii.headboxes is None  # no head boxes in these samples
    assert mpii.visibility.shape == (5, 16) and mpii.joints_gt.shape == (5, 16, 2)


@needs_shared
@pytest.mark.parametrize("index", range(5))
def test_mpii_crop_round_trip(mpii, index):
    check_crop_round_trip(mpii, index)


@needs_shared
def test_mpii_getitem_contract(mpii):
    image, target, weight, meta = mpii[0]
    assert tuple(image.shape) == (3, 256, 256) and str(image.dtype) == "torch.float32"
    assert tuple(target.shape) == (16, 64, 64) and tuple(weight.shape) == (16, 1)
    assert meta["image"].endswith("005808361.jpg")
    for key, shape in [("center", (2,)), ("scale", (2,)), ("joints", (16, 3)), ("headbox", (4,))]:
        assert meta[key].shape == shape and meta[key].dtype == np.float32
    assert isinstance(meta["flipped"], bool) and meta["valid"] is True


@needs_shared
def test_coco_samples_load(coco):
    raw = json.loads((SHARED / "coco" / "test_coco.json").read_text())
    kept = [a for a in raw["annotations"] if not a["iscrowd"] and max(a["keypoints"][2::3]) > 0]
    assert len(coco) == len(kept) == 12
    assert coco.image_ids == sorted(i["id"] for i in raw["images"])
    assert len(coco.coco.getAnnIds()) == len(raw["annotations"])
    by_id = {a["id"]: a for a in kept}
    for i in range(len(coco)):
        kps = np.asarray(coco.records.joints[i])
        match = [a for a in by_id.values() if a["image_id"] == coco.records.image_ids[i]]
        assert any(np.allclose(kps.reshape(-1), a["keypoints"]) for a in match)
    # box -> center/scale at aspect 192/256 with 1.25 padding
    a = raw["annotations"][0]
    x, y, w, h = a["bbox"]
    j = 0
    np.testing.assert_allclose(
        coco.records.centers[j], [x + (w - 1) / 2, y + (h - 1) / 2], rtol=1e-5
    )
    assert coco.records.scales[j][1] == pytest.approx((h - 1) / 200 * 1.25, rel=1e-5)


@needs_shared
@pytest.mark.parametrize("index", [0, 3, 7, 11])
def test_coco_crop_round_trip(coco, index):
    check_crop_round_trip(coco, index)


@needs_shared
def test_coco_detected_boxes():
    det_file = SHARED / "coco" / "test_coco_det_AP_H_56.json"
    dets = json.loads(det_file.read_text())
    ds = COCODataset.from_files(
        SHARED / "coco" / "test_coco.json",
        SHARED / "coco",
        detections_file=det_file,
        box_threshold=0.5,
        input_size=(256, 192),
    )
    expect = [d for d in dets if d["category_id"] == 1 and d["score"] >= 0.5]
    assert len(ds) == len(expect) > 0
    assert ds.uses_detections
    np.testing.assert_allclose(ds.records.scores, [d["score"] for d in expect], rtol=1e-6)
    _, _, weight, meta = ds[0]
    assert float(weight.sum()) == 0.0 and meta["score"] == pytest.approx(expect[0]["score"])
