"""Bad data: missing paths, malformed records, unreadable images."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from posenfs_cli.config import DataConfig
from posenfs_cli.data.base import DataWarning
from posenfs_cli.data.build import build_dataset
from posenfs_cli.data.coco import COCODataset
from posenfs_cli.data.mpii import MPIIDataset
from posenfs_cli.errors import PosenfsError


def mpii_record(image: str, k: int = 16) -> dict:
    joints = [[20.0 + 3 * i, 30.0 + 2 * i] for i in range(k)]
    return {
        "image": image,
        "center": [40.0, 40.0],
        "scale": 0.3,
        "joints": joints,
        "joints_vis": [1] * k,
    }


def write_mpii_root(root: Path, records: list[dict], images: dict[str, bool]) -> Path:
    (root / "annot").mkdir(parents=True)
    (root / "images").mkdir()
    (root / "annot" / "train.json").write_text(json.dumps(records))
    for name, good in images.items():
        if good:
            img = np.full((80, 80, 3), 120, np.uint8)
            cv2.imwrite(str(root / "images" / name), img)
        else:
            (root / "images" / name).write_bytes(b"not a jpeg at all")
    return root


def cfg_for(root: Path | None, dataset: str = "mpii") -> DataConfig:
    return DataConfig(
        dataset=dataset,
        keypoints=dataset if dataset != "synthetic" else "mpii",
        root=str(root) if root else None,
        train_split="train",
        input_size=[64, 64],
        sigma=1.0,
    )


def test_missing_root(tmp_path):
    root = tmp_path / "nope"
    with pytest.raises(PosenfsError) as e:
        build_dataset(cfg_for(root), "train", train=False)
    msg = str(e.value)
    assert str(root) in msg and "annot/" in msg and "posenfs data synth" in msg
    assert "\n" not in msg


def test_root_not_set():
    with pytest.raises(PosenfsError, match="data.root is not set"):
        build_dataset(cfg_for(None, "coco"), "train", train=False)


def test_missing_annotation_file(tmp_path):
    (tmp_path / "annot").mkdir()
    (tmp_path / "images").mkdir()
    with pytest.raises(PosenfsError) as e:
        build_dataset(cfg_for(tmp_path), "train", train=False)
    assert "train.json" in str(e.value) and "posenfs data synth" in str(e.value)


def test_missing_coco_annotation(tmp_path):
    (tmp_path / "annotations").mkdir()
    with pytest.raises(PosenfsError, match="person_keypoints_train.json"):
        build_dataset(cfg_for(tmp_path, "coco"), "train", train=False)


def test_split_names_alias_both_ways():
    from posenfs_cli.data.jsonio import split_names

    same = (("train", "train2017"), ("val", "valid", "val2017"))
    assert split_names("val2017", same) == ["val2017", "val", "valid"]
    assert split_names("val", same) == ["val", "valid", "val2017"]
    assert split_names("train", same) == ["train", "train2017"]
    assert split_names("test", same) == ["test"]


@pytest.mark.parametrize(
    ("layout", "asked", "written"),
    [
        ("coco", "val2017", "val"),  # COCO's own name finds a `posenfs data synth` root
        ("coco", "val", "val2017"),
        ("coco", "train2017", "train"),
        ("mpii", "val", "valid"),
        ("mpii", "valid", "val"),
        ("crowdpose", "valid", "val"),
    ],
)
def test_split_aliases_find_the_written_file(tmp_path, layout, asked, written):
    from posenfs_cli.data.coco import coco_paths
    from posenfs_cli.data.crowdpose import crowdpose_paths
    from posenfs_cli.data.mpii import mpii_paths

    rel, images, paths = {
        "coco": (f"annotations/person_keypoints_{written}.json", f"images/{written}", coco_paths),
        "mpii": (f"annot/{written}.json", "images", mpii_paths),
        "crowdpose": (f"annotations/crowdpose_{written}.json", "images", crowdpose_paths),
    }[layout]
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_text("[]")
    (tmp_path / images).mkdir(parents=True)
    assert paths(tmp_path, asked) == (tmp_path / rel, tmp_path / images)
    with pytest.raises(PosenfsError, match="test"):  # an unknown split names itself
        paths(tmp_path, "test")


def test_synthetic_root_without_layout(tmp_path):
    with pytest.raises(PosenfsError, match="neither annot/"):
        build_dataset(cfg_for(tmp_path, "synthetic"), "train", train=False)


def test_layout_mismatch():
    cfg = DataConfig(dataset="coco", keypoints="mpii", root="/x")
    with pytest.raises(PosenfsError, match="data.keypoints=coco"):
        build_dataset(cfg, "train", train=False)


def test_wrong_joint_count(tmp_path):
    recs = [mpii_record("a.jpg"), mpii_record("a.jpg"), mpii_record("a.jpg", k=15)]
    root = write_mpii_root(tmp_path, recs, {"a.jpg": True})
    with pytest.raises(PosenfsError) as e:
        build_dataset(cfg_for(root), "train", train=False)
    msg = str(e.value)
    assert "train.json" in msg and "record 2" in msg and "15 joints" in msg and "16" in msg


def test_nan_joint(tmp_path):
    recs = [mpii_record("a.jpg"), mpii_record("a.jpg")]
    recs[1]["joints"][4][0] = float("nan")
    root = write_mpii_root(tmp_path, recs, {"a.jpg": True})
    with pytest.raises(PosenfsError) as e:
        build_dataset(cfg_for(root), "train", train=False)
    assert "train.json" in str(e.value) and "record 1" in str(e.value)
    assert "NaN" in str(e.value)


def test_missing_key_and_bad_json(tmp_path):
    rec = mpii_record("a.jpg")
    del rec["scale"]
    root = write_mpii_root(tmp_path, [mpii_record("a.jpg"), rec], {"a.jpg": True})
    with pytest.raises(PosenfsError, match=r"record 1 has no 'scale'"):
        build_dataset(cfg_for(root), "train", train=False)
    (root / "annot" / "train.json").write_text("{ not json")
    with pytest.raises(PosenfsError, match="not valid JSON"):
        build_dataset(cfg_for(root), "train", train=False)


def coco_file(tmp_path: Path, anns: list[dict]) -> Path:
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 80, "height": 80}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person"}],
    }
    p = tmp_path / "ann.json"
    p.write_text(json.dumps(data))
    return p


def coco_ann(i: int, n: int = 17) -> dict:
    return {
        "id": i,
        "image_id": 1,
        "category_id": 1,
        "iscrowd": 0,
        "area": 100.0,
        "bbox": [10.0, 10.0, 40.0, 50.0],
        "keypoints": [20.0, 20.0, 2] * n,
    }


def test_coco_wrong_keypoint_count(tmp_path):
    p = coco_file(tmp_path, [coco_ann(1), coco_ann(2, n=16)])
    with pytest.raises(PosenfsError) as e:
        COCODataset.from_files(p, tmp_path, input_size=(64, 48))
    assert "ann.json" in str(e.value) and "annotation 1" in str(e.value) and "51" in str(e.value)


def test_coco_nan(tmp_path):
    bad = coco_ann(2)
    bad["bbox"][2] = float("nan")
    p = coco_file(tmp_path, [coco_ann(1), bad])
    with pytest.raises(PosenfsError, match="annotation 1 has a non-finite value"):
        COCODataset.from_files(p, tmp_path, input_size=(64, 48))


def test_corrupt_image_is_skipped_and_counted(tmp_path):
    recs = [mpii_record("good0.jpg"), mpii_record("bad.jpg"), mpii_record("good1.jpg")]
    root = write_mpii_root(tmp_path, recs, {"good0.jpg": True, "bad.jpg": False, "good1.jpg": True})
    ds = build_dataset(cfg_for(root), "train", train=True)
    with pytest.warns(DataWarning, match="bad.jpg"):
        image, target, weight, meta = ds[1]
    assert meta["index"] == 2 and meta["valid"] is False  # the next readable record
    assert ds.skipped == [1]
    assert float(weight.sum()) > 0
    # evaluation: a placeholder for the requested record, weights 0, flagged invalid
    ev = build_dataset(cfg_for(root), "train", train=False)
    with pytest.warns(DataWarning):
        image, target, weight, meta = ev[1]
    assert meta["index"] == 1 and meta["valid"] is False
    assert float(weight.sum()) == 0.0 and float(target.abs().sum()) == 0.0
    assert tuple(image.shape) == (3, 64, 64)
    assert ev.skipped == [1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ev[0][3]["valid"] is True


def test_missing_image_counted_at_load(tmp_path):
    recs = [mpii_record("good0.jpg"), mpii_record("gone.jpg")]
    root = write_mpii_root(tmp_path, recs, {"good0.jpg": True})
    with pytest.warns(DataWarning, match="1 image"):
        ds = MPIIDataset.from_root(root, "train", input_size=(64, 64), train=True)
    assert ds.missing_images == ["gone.jpg"]
    with pytest.warns(DataWarning):
        assert ds[1][3]["index"] == 0  # wraps around to the first readable record
