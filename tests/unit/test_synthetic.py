"""Synthetic people: determinism, annotations, appearance cues, in-memory datasets."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from posenfs_cli.config import DataConfig, SyntheticConfig
from posenfs_cli.data.build import build_dataset, build_loader
from posenfs_cli.data.layouts import COCO, MPII
from posenfs_cli.data.synthetic import (
    PARTS,
    SUPER_NAMES,
    Shape,
    SynthSplit,
    coco_entries,
    generate_image,
    generate_scene,
    hsv_to_bgr,
    mpii_records,
    top_shape,
)


def split(style="mpii", name="train", seed=0, n=8, people=1, size=128) -> SynthSplit:
    return SynthSplit(style, name, seed, n, size, people)


def test_bit_identical_for_the_same_seed():
    for style, people in (("mpii", 1), ("coco", 3)):
        a_img, a_scene = generate_image(split(style, people=people), 3)
        b_img, b_scene = generate_image(split(style, people=people), 3)
        assert a_img.tobytes() == b_img.tobytes()
        for pa, pb in zip(a_scene.persons, b_scene.persons, strict=True):
            np.testing.assert_array_equal(pa.joints, pb.joints)
            np.testing.assert_array_equal(pa.vis, pb.vis)


def test_seed_split_and_index_change_the_image():
    base = generate_image(split(), 0)[0]
    assert not np.array_equal(base, generate_image(split(seed=1), 0)[0])
    assert not np.array_equal(base, generate_image(split(name="val"), 0)[0])
    assert not np.array_equal(base, generate_image(split(), 1)[0])


def test_image_properties_and_joint_quantisation():
    img, scene = generate_image(split(size=160), 2)
    assert img.shape == (160, 160, 3) and img.dtype == np.uint8
    j = scene.persons[0].joints
    assert j.shape == (len(SUPER_NAMES), 2)
    np.testing.assert_array_equal(j * 16, np.round(j * 16))  # multiples of 1/16 px


def test_coco_style_has_several_people_and_all_flags():
    counts, flags = [], set()
    for i in range(30):
        scene = generate_scene(split("coco", people=3), i)
        counts.append(len(scene.persons))
        for p in scene.persons:
            flags.update(p.vis.tolist())
    assert max(counts) == 3 and min(counts) == 1
    assert flags == {0, 1, 2}


def test_left_right_follow_facing():
    """Facing the camera: the person's left shoulder is on the image right; from the back the
    other way round (bodies are tilted at most 25 degrees)."""
    seen = set()
    for i in range(40):
        p = generate_scene(split(), i).persons[0]
        ls, rs = (
            p.joints[SUPER_NAMES.index("left_shoulder")],
            p.joints[SUPER_NAMES.index("right_shoulder")],
        )
        assert (ls[0] > rs[0]) == p.front
        seen.add(p.front)
    assert seen == {True, False}


def test_mpii_records_are_one_based_with_head_boxes():
    sp = split()
    scene = generate_scene(sp, 0)
    (rec,) = mpii_records(sp, 0, scene)
    idx = [SUPER_NAMES.index(n) for n in MPII.names]
    np.testing.assert_array_equal(np.asarray(rec["joints"]), scene.persons[0].joints[idx] + 1)
    x1, y1, x2, y2 = rec["headbox"]
    assert x2 > x1 and y2 > y1
    top = scene.persons[0].joints[SUPER_NAMES.index("head_top")] + 1
    assert x1 <= top[0] <= x2 and y1 <= top[1] <= y2 + 1e-6
    assert rec["image"] == "synth_train_000000.jpg"


def test_coco_entries():
    sp = split("coco", people=3)
    scene = generate_scene(sp, 4)
    img, anns = coco_entries(sp, 4, scene, 10)
    assert img["id"] == 5 and img["width"] == img["height"] == 128
    assert [a["id"] for a in anns] == list(range(10, 10 + len(anns)))
    for a in anns:
        v = np.asarray(a["keypoints"][2::3])
        assert len(a["keypoints"]) == 51 and a["num_keypoints"] == int((v > 0).sum())
        x, y, w, h = a["bbox"]
        assert x >= 0 and y >= 0 and x + w <= 128 + 1e-6 and y + h <= 128 + 1e-6
        assert 0 < a["area"] <= w * h


def test_top_shape_painter_order():
    sq = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
    shapes = [
        Shape("poly", sq, 0.0, (0, 0, 0), 0, PARTS.index("torso")),
        Shape("capsule", np.array([[5.0, -5.0], [5.0, 20.0]]), 2.0, (0, 0, 0), 0, 3),
        Shape("capsule", np.array([[8.0, 8.0], [8.0, 8.0]]), 1.0, (0, 0, 0)),  # decoration
    ]
    top = top_shape(np.array([[1.0, 1.0], [5.0, 5.0], [8.0, 8.0], [30.0, 30.0]]), shapes)
    assert top.tolist() == [0, 1, 0, -1]


def test_hsv_to_bgr_matches_opencv():
    hsv = np.array([[0.0, 1.0, 1.0], [0.5, 0.5, 0.8], [0.9, 0.3, 0.4], [0.33, 0.0, 0.6]])
    ours = hsv_to_bgr(hsv)
    cv_in = np.round(hsv * [180, 255, 255]).astype(np.uint8)[None]
    ref = cv2.cvtColor(cv_in, cv2.COLOR_HSV2BGR)[0]
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 3


def synthetic_cfg(style: str, n: int = 6) -> DataConfig:
    return DataConfig(
        dataset="synthetic",
        keypoints=style,
        input_size=[64, 64],
        sigma=1.0,
        synthetic=SyntheticConfig(train_images=n, val_images=4, seed=3, image_size=128),
    )


def test_in_memory_mpii_dataset_contract():
    ds = build_dataset(synthetic_cfg("mpii"), "val", train=False)
    assert len(ds) == 4 and ds.layout is MPII and ds.num_joints == 16
    assert ds.input_size == (64, 64) and ds.heatmap_size == (16, 16)
    assert ds.headboxes.shape == (4, 4) and (ds.headboxes[:, 2:] > ds.headboxes[:, :2]).all()
    assert ds.visibility.all()  # single people kept inside the image
    image, target, weight, meta = ds[0]
    assert tuple(image.shape) == (3, 64, 64) and tuple(target.shape) == (16, 16, 16)
    assert float(weight.sum()) == 16.0
    assert meta["image"] == "synthetic:mpii/val/synth_val_000000.jpg"
    np.testing.assert_array_equal(meta["joints"][:, :2], ds.joints_gt[0])
    # deterministic without augmentation
    np.testing.assert_array_equal(ds[0][0].numpy(), image.numpy())


def test_in_memory_train_and_val_differ():
    cfg = synthetic_cfg("mpii")
    tr = build_dataset(cfg, "train", train=False)
    va = build_dataset(cfg, "val", train=False)
    assert not np.array_equal(tr.records.joints[0], va.records.joints[0])


def test_in_memory_coco_dataset_contract():
    ds = build_dataset(synthetic_cfg("coco"), "train", train=True)
    assert ds.layout is COCO and len(ds) >= 6
    assert ds.image_ids == list(range(1, 7))
    assert len(ds.coco.getAnnIds()) >= len(ds)
    image, target, weight, meta = ds[0]
    assert tuple(target.shape) == (17, 16, 16) and meta["image_id"] in ds.image_ids
    assert set(np.unique(meta["joints"][:, 2])) <= {0.0, 1.0, 2.0}


def test_augmentation_seeded_and_varied():
    ds = build_dataset(synthetic_cfg("mpii"), "train", train=True)
    ds.seed = 5
    a = ds.get_sample(1)
    b = ds.get_sample(1)
    np.testing.assert_array_equal(a.image.numpy(), b.image.numpy())
    ds.set_epoch(1)
    c = ds.get_sample(1)
    assert not np.array_equal(a.image.numpy(), c.image.numpy())


def test_loader_reproducible_with_workers():
    ds = build_dataset(synthetic_cfg("mpii", n=8), "train", train=True)

    def first_batch(seed: int) -> torch.Tensor:
        loader = build_loader(ds, 4, shuffle=True, workers=2, seed=seed)
        batch = next(iter(loader))
        return batch[0], batch[3]["index"]

    x1, i1 = first_batch(0)
    x2, i2 = first_batch(0)
    x3, i3 = first_batch(1)
    assert torch.equal(i1, i2) and torch.equal(x1, x2)
    assert not torch.equal(x1, x3)


@pytest.mark.parametrize("style", ["mpii", "coco"])
def test_targets_sit_on_the_rendered_limbs(style):
    """Sanity: the wrist targets of unaugmented crops peak where joints_input says."""
    ds = build_dataset(synthetic_cfg(style), "train", train=False)
    s = ds.get_sample(0)
    k = ds.layout.index("left_wrist")
    if s.target_weight[k, 0] > 0:
        peak = np.unravel_index(np.argmax(s.target[k]), s.target[k].shape)
        jx, jy = s.joints_input[k, :2]
        assert peak == (int(np.floor(jy / 4 + 0.5)), int(np.floor(jx / 4 + 0.5)))
