"""``posenfs predict`` end to end: real COCO photos with detections, a video, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from posenfs_cli.cli.app import app
from posenfs_cli.config import load_recipe
from posenfs_cli.data.jsonio import load_detections
from posenfs_cli.engine.checkpoint import save_checkpoint
from posenfs_cli.models.build import build_from_recipe

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
COCO = SHARED / "coco"
DETS = COCO / "test_coco_det_AP_H_56.json"
runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A randomly initialised tiny model with the 17 COCO keypoints (64x64 input)."""
    recipe = load_recipe(
        REPO / "src/posenfs_cli/recipes/synthetic/tiny.yaml", ["data.keypoints=coco"]
    )
    model = build_from_recipe(recipe, load_pretrained=False)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", model, recipe)


def predict(*args: str | Path):
    return runner.invoke(app, ["predict", *map(str, args), "--device", "cpu"])


def check_instances(records: object, num_joints: int = 17) -> None:
    """The schema of one image's prediction list."""
    assert isinstance(records, list)
    for r in records:
        assert set(r) - {"image_id"} == {"bbox", "bbox_score", "keypoints", "keypoint_scores"}
        x1, y1, x2, y2 = r["bbox"]
        assert x1 <= x2 and y1 <= y2
        assert isinstance(r["bbox_score"], float)
        assert len(r["keypoints"]) == num_joints and len(r["keypoint_scores"]) == num_joints
        assert all(len(p) == 2 and all(np.isfinite(p)) for p in r["keypoints"])
        assert all(isinstance(s, float) for s in r["keypoint_scores"])


def error_line(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.skipif(not DETS.is_file(), reason=f"real COCO samples not found at {COCO}")
def test_real_coco_images_with_detections(ckpt, tmp_path):
    out = tmp_path / "pred"
    res = predict(COCO, "-c", ckpt, "--boxes", DETS, "--overlay", "--out", out, "-b", "16")
    assert res.exit_code == 0, res.output
    kept = load_detections(DETS, 0.3)
    images = sorted(COCO.glob("*.jpg"))
    assert len(images) == 4
    total = 0
    for img_path in images:
        records = json.loads((out / f"{img_path.stem}.json").read_text())
        check_instances(records)
        mine = [d for d in kept if d["image_id"] == int(img_path.stem)]
        assert len(records) == len(mine)  # every box >= --box-thr, none other
        best = max(mine, key=lambda d: d["score"])
        x, y, w, h = best["bbox"]
        np.testing.assert_allclose(records[0]["bbox"], [x, y, x + w, y + h], atol=0.01)
        assert records[0]["bbox_score"] == pytest.approx(best["score"], abs=1e-5)
        overlay = cv2.imread(str(out / f"{img_path.stem}_overlay.jpg"))
        src = cv2.imread(str(img_path))
        assert overlay is not None and overlay.shape == src.shape
        assert np.abs(overlay.astype(int) - src).max() > 50  # something was drawn
        total += len(records)
    assert f"{total} persons" in res.output and str(out) in res.output


def write_video(path: Path, frames: int = 5, size: tuple[int, int] = (96, 128)) -> None:
    """A short mp4 of a moving bright 'person' on a dark background."""
    h, w = size
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (w, h))
    assert vw.isOpened()
    for i in range(frames):
        img = np.full((h, w, 3), 30, np.uint8)
        cv2.rectangle(img, (20 + 4 * i, 15), (50 + 4 * i, 85), (200, 180, 160), -1)
        vw.write(img)
    vw.release()


def count_frames(path: Path) -> tuple[int, float]:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return n, fps


def test_video_gives_one_entry_per_frame_and_same_length_overlay(ckpt, tmp_path):
    video = tmp_path / "clip.mp4"
    write_video(video)
    out = tmp_path / "vid"
    res = predict(video, "-c", ckpt, "--overlay", "--out", out, "--no-flip")
    assert res.exit_code == 0, res.output
    data = json.loads((out / "clip.json").read_text())
    assert [e["frame_id"] for e in data] == list(range(5))
    for e in data:
        assert set(e) == {"frame_id", "instances"}
        check_instances(e["instances"])
        assert len(e["instances"]) == 1  # whole-image default
        assert e["instances"][0]["bbox"] == [0.0, 0.0, 128.0, 96.0]
    n, fps = count_frames(out / "clip_overlay.mp4")
    assert n == 5 and fps == pytest.approx(10.0)
    # --max-frames stops early
    res = predict(video, "-c", ckpt, "--out", tmp_path / "vid3", "--max-frames", "3")
    assert res.exit_code == 0, res.output
    assert len(json.loads((tmp_path / "vid3" / "clip.json").read_text())) == 3


def test_folder_with_a_corrupt_image_processes_the_rest(ckpt, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    img = np.full((120, 80, 3), 90, np.uint8)
    cv2.imwrite(str(folder / "a.jpg"), img)
    cv2.imwrite(str(folder / "c.png"), img)
    (folder / "b.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    (folder / "readme.txt").write_text("not an image, ignored")
    out = tmp_path / "out"
    res = predict(folder, "-c", ckpt, "--out", out, "--whole-image", "--overlay")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("*.json")) == ["a.json", "c.json"]
    assert sorted(p.name for p in out.glob("*_overlay.jpg")) == ["a_overlay.jpg", "c_overlay.jpg"]
    assert "skipped 1" in res.output and "b.jpg" in res.output
    assert "2 images" in res.output


def test_default_out_dir_is_auto_numbered(ckpt, tmp_path, monkeypatch):
    img = tmp_path / "person.png"
    cv2.imwrite(str(img), np.full((64, 48, 3), 128, np.uint8))
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert predict(img, "-c", ckpt, "--no-flip").exit_code == 0
    assert (tmp_path / "runs/predict/person/person.json").is_file()
    assert (tmp_path / "runs/predict/person2/person.json").is_file()


def test_bad_inputs_are_one_clear_line(ckpt, tmp_path):
    good = tmp_path / "good.jpg"
    cv2.imwrite(str(good), np.full((64, 64, 3), 100, np.uint8))
    bad_img = tmp_path / "broken.jpg"
    bad_img.write_bytes(b"garbage" * 10)
    bad_vid = tmp_path / "broken.mp4"
    bad_vid.write_bytes(b"\x00\x01" * 100)
    bad_boxes = tmp_path / "boxes.json"
    bad_boxes.write_text(json.dumps({"image_id": 1, "bbox": [0, 0, 1, 1]}))
    out = tmp_path / "o"

    assert "broken.jpg" in error_line(predict(bad_img, "-c", ckpt, "--out", out))
    assert "broken.mp4" in error_line(predict(bad_vid, "-c", ckpt, "--out", out))
    line = error_line(predict(good, "-c", good, "--out", out))  # a JPEG as checkpoint
    assert "good.jpg" in line and "not a safetensors checkpoint" in line
    line = error_line(predict(good, "-c", ckpt, "--boxes", bad_boxes, "--out", out))
    assert "boxes.json" in line and "list" in line
    assert "does not exist" in error_line(predict(tmp_path / "nope.jpg", "-c", ckpt))
    line = error_line(predict(good, "-c", ckpt, "--boxes", bad_boxes, "--whole-image"))
    assert "exclude each other" in line
    line = error_line(predict(good, "-c", ckpt, "--boxes", DETS, "--out", out))
    assert "cannot match image good.jpg" in line or "does not exist" in line
