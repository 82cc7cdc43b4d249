"""`posenfs env` / `posenfs --version --verbose`: the bug-report block, gathered by envinfo."""

from __future__ import annotations

import json
import platform
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from posenfs_cli import __version__, envinfo
from posenfs_cli.cli.app import app

runner = CliRunner()

REQUIRED = ("posenfs", "Python", "platform", "torch", "CUDA", "device", "threads", "OpenCV")
REQUIRED += ("pycocotools", "numpy", "safetensors")


def _rows(text: str) -> dict[str, str]:
    out = {}
    for line in text.strip().splitlines():
        key, sep, value = line.partition(":")
        assert sep, f"not a 'label: value' line: {line!r}"
        out[key] = value.strip()
    return out


def test_gather_reports_this_machine():
    rows = dict(envinfo.gather("cpu"))
    for key in REQUIRED:
        assert rows.get(key), key
    assert rows["posenfs"].startswith(__version__ + " (")
    assert rows["Python"].startswith(platform.python_version())
    assert rows["torch"].startswith(torch.__version__)
    assert rows["device"] == "cpu (--device cpu)"
    assert rows["threads"].startswith(f"torch {torch.get_num_threads()} intra-op")
    import cv2
    import numpy

    assert rows["OpenCV"] == cv2.__version__ and rows["numpy"] == numpy.__version__
    assert rows["pycocotools"] != envinfo.NOT_INSTALLED


def test_version_verbose_prints_the_block():
    result = runner.invoke(app, ["--version", "--verbose"])
    assert result.exit_code == 0, result.output
    rows = _rows(result.stdout)
    for key in REQUIRED:
        assert rows.get(key), key
    assert rows["posenfs"].startswith(__version__)
    # values are aligned so the block reads as a table when pasted
    lines = result.stdout.strip().splitlines()
    starts = {len(line) - len(line.partition(":")[2].lstrip()) for line in lines}
    assert len(starts) == 1


def test_version_verbose_order_and_short_form_unchanged():
    assert runner.invoke(app, ["--version"]).stdout.strip() == f"posenfs {__version__}"
    assert runner.invoke(app, ["-V"]).stdout.strip() == f"posenfs {__version__}"
    a = runner.invoke(app, ["--verbose", "--version"])
    b = runner.invoke(app, ["--version", "--verbose"])
    assert a.exit_code == b.exit_code == 0 and _rows(a.stdout).keys() == _rows(b.stdout).keys()
    # --version still wins over a command
    assert runner.invoke(app, ["--version", "profile"]).stdout.strip() == f"posenfs {__version__}"


def test_env_command_matches_version_verbose_and_json():
    env = runner.invoke(app, ["env"])
    assert env.exit_code == 0, env.output
    assert _rows(env.stdout).keys() == _rows(runner.invoke(app, ["-V", "--verbose"]).stdout).keys()
    js = runner.invoke(app, ["env", "--json"])
    data = json.loads(js.stdout)
    assert data["posenfs"].startswith(__version__) and data["device"].startswith("cpu")


def test_env_resolves_the_global_device_without_failing():
    # a device that cannot be had is reported, not raised: the report is for broken setups too
    dev = "cuda:7" if not torch.cuda.is_available() else "tpu"
    result = runner.invoke(app, ["--device", dev, "env"])
    assert result.exit_code == 0, result.output
    assert _rows(result.stdout)["device"].startswith("none: --device")
    local = runner.invoke(app, ["--device", dev, "env", "--device", "cpu"])
    assert _rows(local.stdout)["device"] == "cpu (--device cpu)"


def test_missing_command_still_fails():
    result = runner.invoke(app, ["--device", "cpu"])
    assert result.exit_code == 2 and "Missing command" in result.output


def test_missing_packages_are_reported_not_raised(monkeypatch):
    monkeypatch.setattr(envinfo, "PACKAGES", (("nopkg", ("posenfs-no-such-dist",)),))

    def broken() -> str:
        raise RuntimeError("driver exploded\nsecond line")

    monkeypatch.setattr(envinfo, "_threads", broken)
    rows = dict(envinfo.gather("cpu"))
    assert rows["nopkg"] == envinfo.NOT_INSTALLED
    assert rows["threads"] == "unavailable (RuntimeError: driver exploded)"


def test_cuda_machine_is_described(monkeypatch):
    # what a GPU machine prints, with torch's CUDA queries faked
    props = SimpleNamespace(name="Fake GPU", total_memory=80 * 1024**3, major=9, minor=0)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 90100)
    rows = dict(envinfo.gather("auto"))
    assert rows["CUDA"] == "12.8, 2 GPUs visible"
    assert rows["cuDNN"] == "9.1.0"
    assert rows["GPU 0"] == rows["GPU 1"] == "Fake GPU, 80.0 GiB, compute capability 9.0"
    assert rows["device"] == "cuda:0 (auto-selected): Fake GPU, 80.0 GiB, compute capability 9.0"
    assert rows["torch"].endswith("(CUDA 12.8 build)")


@pytest.mark.parametrize("raw,text", [(8902, "8.9.2"), (90100, "9.1.0"), (91002, "9.10.2")])
def test_cudnn_version_text(monkeypatch, raw, text):
    monkeypatch.setattr(torch.version, "cuda", "12.1")
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: raw)
    assert envinfo._cudnn() == text


def test_cpu_build_has_no_cudnn_line(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    rows = dict(envinfo.gather("cpu"))
    assert rows["CUDA"] == "none (torch built without CUDA)" and "cuDNN" not in rows


def test_env_vars_listed_when_set(monkeypatch):
    for k in envinfo.ENV_VARS:
        monkeypatch.delenv(k, raising=False)
    assert "env" not in dict(envinfo.gather("cpu"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,2")
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert dict(envinfo.gather("cpu"))["env"] == "CUDA_VISIBLE_DEVICES=1,2 OMP_NUM_THREADS=4"
