"""The Python API end to end: a tiny search, then evaluate, predict and prune its checkpoint.

The same functions the CLI calls, with keyword options instead of flags; nothing is printed
except what a caller asks for through the ``on_*`` callbacks.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from posenfs_cli import api
from posenfs_cli.engine import run as runfiles

TINY = [
    "data.synthetic.train_images=32",
    "data.synthetic.val_images=8",
    "train.batch_size=8",
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    project = tmp_path_factory.mktemp("api")
    run = api.search(
        "synthetic/tiny",
        epochs=1,
        amp="off",  # a typed value: YAML would have read "off" as false
        sets=TINY,
        project=project,
        name="tiny",
        device="cpu",
        progress=False,
    )
    return project, run


def test_search_returns_the_run(searched):
    project, run = searched
    assert run.run_dir == project / "search" / "tiny"
    assert run.best.is_file() and run.is_main
    assert [row["epoch"] for row in run.history if "epoch" in row][-1] == 1
    assert "amp: 'off'" in (run.run_dir / runfiles.CONFIG).read_text()


def test_evaluate_writes_the_eval_run(searched):
    project, run = searched
    started = []
    res = api.evaluate(run.best, project=project, device="cpu", workers=0, on_start=started.append)
    assert started and started[0].checkpoint == run.best
    assert res.run_dir.parent == project / "eval"
    assert {p.name for p in res.files} == {"pred.mat", "results.md", "metrics.json"}
    assert res.metrics["main"] == "pckh" and 0.0 <= res.main <= 100.0
    saved = json.loads((res.run_dir / "metrics.json").read_text())
    assert saved["persons"] == res.persons > 0


def test_predict_writes_one_json_per_image(searched, tmp_path):
    _, run = searched
    img = np.random.default_rng(0).integers(0, 255, (96, 64, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "person.jpg"), img)
    res = api.predict(tmp_path / "person.jpg", run.best, out=tmp_path / "out", device="cpu")
    assert res.tally.frames == 1 and res.tally.persons == 1
    people = json.loads((tmp_path / "out" / "person.json").read_text())
    assert len(people) == 1 and len(people[0]["keypoints"]) == 16


def test_prune_reports_and_writes_only_when_something_goes(searched, tmp_path):
    _, run = searched
    res = api.prune(run.best, out=tmp_path / "p.safetensors", timing=False, device="cpu")
    assert res.before["params"]["total"] >= res.after["params"]["total"]
    if res.nothing_removed:
        assert res.written == {} and "smallest kept" in res.hint()
        assert not (tmp_path / "p.safetensors").exists()
    else:
        assert (tmp_path / "p.safetensors").is_file() and res.report.max_abs_diff <= 1e-6


def test_profile_of_a_recipe(searched):
    job = api.profile(recipe="synthetic/tiny", timing=False, device="cpu")
    assert job.size == [64, 64] and job.report.params_total > 0


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match="epochz"):
        api.search("synthetic/tiny", epochz=1)
