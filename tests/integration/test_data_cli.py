"""`posenfs data synth` round trips through the real loaders; `posenfs visualize dataset`."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from posenfs_cli.cli.app import app
from posenfs_cli.config import DataConfig, SyntheticConfig
from posenfs_cli.data.build import build_dataset
from posenfs_cli.data.coco import COCODataset
from posenfs_cli.data.mpii import MPIIDataset, load_headboxes_mat

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
runner = CliRunner()


def synth(out: Path, fmt: str, seed: int = 1, *extra: str):
    args = ["data", "synth", "--format", fmt, "--out", str(out), "--images", "6"]
    args += ["--val-images", "3", "--seed", str(seed), "--size", "128", *extra]
    return runner.invoke(app, args)


def memory_cfg(fmt: str, seed: int = 1, people: int | None = None) -> DataConfig:
    syn = SyntheticConfig(train_images=6, val_images=3, seed=seed, image_size=128)
    if people is not None:
        syn.coco_max_people = people
    return DataConfig(dataset="synthetic", keypoints=fmt, input_size=[64, 64], synthetic=syn)


@pytest.fixture(scope="module")
def mpii_root(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "mpii"
    res = synth(out, "mpii")
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "coco"
    res = synth(out, "coco")
    assert res.exit_code == 0, res.output
    return out


def test_mpii_layout_written(mpii_root):
    for rel in ("annot/train.json", "annot/valid.json", "annot/gt_valid.mat"):
        assert (mpii_root / rel).is_file()
    assert len(list((mpii_root / "images").glob("*.jpg"))) == 9


@pytest.mark.parametrize("split", ["train", "val"])
def test_mpii_written_loads_back_identical(mpii_root, split):
    cfg = memory_cfg("mpii")
    disk = MPIIDataset.from_root(
        mpii_root, "train" if split == "train" else "valid", input_size=(64, 64)
    )
    mem = build_dataset(cfg, split, train=False)
    assert len(disk) == len(mem)
    np.testing.assert_array_equal(disk.records.joints, mem.records.joints)
    np.testing.assert_array_equal(disk.records.centers, mem.records.centers)
    np.testing.assert_array_equal(disk.records.scales, mem.records.scales)
    np.testing.assert_array_equal(disk.headboxes, mem.headboxes)
    # also through the factory with data.root pointing at the written folder
    fac = build_dataset(DataConfig(**{**cfg.__dict__, "root": str(mpii_root)}), split, False)
    np.testing.assert_array_equal(fac.records.joints, mem.records.joints)
    if split == "val":
        np.testing.assert_allclose(
            load_headboxes_mat(mpii_root / "annot" / "gt_valid.mat"), mem.headboxes, atol=1e-4
        )


@pytest.mark.parametrize("split", ["train", "val"])
def test_coco_written_loads_back_identical(coco_root, split):
    disk = COCODataset.from_root(coco_root, split, input_size=(64, 64))
    mem = build_dataset(memory_cfg("coco", people=3), split, train=False)
    assert len(disk) == len(mem) > 0
    np.testing.assert_array_equal(disk.records.joints, mem.records.joints)
    np.testing.assert_array_equal(disk.records.image_ids, mem.records.image_ids)
    np.testing.assert_array_equal(disk.records.centers, mem.records.centers)
    np.testing.assert_array_equal(disk.records.areas, mem.records.areas)
    assert disk.image_ids == mem.image_ids
    assert (coco_root / "images" / split / disk.records.images[0]).is_file()
    # default val_split "valid" resolves to the written "val"
    fac = build_dataset(
        DataConfig(dataset="coco", keypoints="coco", root=str(coco_root), input_size=[64, 64]),
        split,
        False,
    )
    np.testing.assert_array_equal(fac.records.joints, mem.records.joints)


def test_written_images_match_memory_up_to_jpeg(mpii_root):
    mem = build_dataset(memory_cfg("mpii"), "train", train=False)
    name = mem.records.images[0]
    disk = cv2.imread(str(mpii_root / "images" / name)).astype(int)
    ref = mem.source.load(name).astype(int)
    assert np.abs(disk - ref).mean() < 4.0


def test_synth_is_bit_identical_and_seed_dependent(tmp_path, mpii_root):
    again = tmp_path / "again"
    assert synth(again, "mpii").exit_code == 0
    for rel in ("annot/train.json", "annot/valid.json", "images/synth_train_000003.jpg"):
        assert (again / rel).read_bytes() == (mpii_root / rel).read_bytes()
    other = tmp_path / "other"
    assert synth(other, "mpii", 2).exit_code == 0
    a = json.loads((other / "annot/train.json").read_text())
    b = json.loads((mpii_root / "annot/train.json").read_text())
    assert a[0]["joints"] != b[0]["joints"]


def test_synth_prints_a_markup_like_folder_literally(tmp_path):
    out = tmp_path / "d[red]x"
    res = synth(out, "mpii")
    assert res.exit_code == 0, res.output
    assert f"--data-root {out}" in " ".join(res.output.split())
    assert (out / "annot" / "train.json").is_file()


def test_synth_refuses_to_overwrite(mpii_root):
    res = synth(mpii_root, "mpii")
    assert res.exit_code == 2 and "--force" in res.output
    res = runner.invoke(app, ["data", "synth", "--out", "/tmp/x", "--format", "png"])
    assert res.exit_code == 2 and "mpii or coco" in res.output


def test_visualize_synthetic_dataset(tmp_path):
    out = tmp_path / "vis" / "grid.png"
    res = runner.invoke(
        app,
        [
            "visualize",
            "dataset",
            "--dataset",
            "synthetic",
            "--num",
            "4",
            "--input-size",
            "128",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    img = cv2.imread(str(out))
    assert img is not None and img.shape[0] > 256 and img.shape[1] > 256
    assert str(out) in res.output.replace("\n", "")


def test_visualize_written_root(tmp_path, coco_root):
    out = tmp_path / "coco.png"
    res = runner.invoke(
        app,
        [
            "visualize",
            "dataset",
            "--dataset",
            "coco",
            "--data-root",
            str(coco_root),
            "--split",
            "val",
            "--no-augment",
            "--num",
            "3",
            "--input-size",
            "64",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert out.is_file()


def test_visualize_missing_root_is_one_line(tmp_path):
    res = runner.invoke(
        app,
        [
            "visualize",
            "dataset",
            "--dataset",
            "mpii",
            "--data-root",
            str(tmp_path / "no"),
            "--out",
            str(tmp_path / "x.png"),
        ],
    )
    assert res.exit_code == 2
    assert "not found" in res.output and "posenfs data synth" in res.output


@pytest.mark.skipif(
    not (SHARED / "mpii" / "test_mpii.json").is_file(), reason=f"real samples not found at {SHARED}"
)
def test_visualize_shared_samples(tmp_path):
    out = tmp_path / "mpii.png"
    res = runner.invoke(
        app,
        [
            "visualize",
            "dataset",
            "--dataset",
            "mpii",
            "--ann-file",
            str(SHARED / "mpii" / "test_mpii.json"),
            "--image-dir",
            str(SHARED / "mpii"),
            "--no-augment",
            "--num",
            "5",
            "--input-size",
            "128",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert out.is_file()
