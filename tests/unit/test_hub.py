"""ImageNet weights by name, served offline: a local HTTP server on 127.0.0.1, file:// and a
folder; wrong checksums, truncated transfers and files, no network, atomic cache writes."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import json
import socket
import struct
import threading
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from posenfs_cli import hub
from posenfs_cli.cli.app import app
from posenfs_cli.config import ModelConfig
from posenfs_cli.data.layouts import get_layout
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.backbones.mobilenet_v2 import MobileNetV2Backbone
from posenfs_cli.models.build import build_model

runner = CliRunner()


def mbv2_file_bytes(seed: int = 0) -> tuple[bytes, dict[str, torch.Tensor]]:
    """A torchvision-named MobileNetV2 ImageNet file (random values, the real layout)."""
    torch.manual_seed(seed)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v.clone()
             for k, v in MobileNetV2Backbone().state_dict().items()}  # fmt: skip
    state["features.17.conv.2.weight"] = torch.randn(320, 960, 1, 1)
    state["features.18.0.weight"] = torch.randn(1280, 320, 1, 1)
    state["classifier.1.weight"] = torch.randn(1000, 1280)
    state["classifier.1.bias"] = torch.randn(1000)
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue(), state


def safetensors_bytes() -> bytes:
    from safetensors.torch import save

    return save({"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(4)})


class Server:
    """A threaded HTTP server on 127.0.0.1 serving ``files`` (name -> bytes), with options to
    cut a body short, add headers, or answer 404; counts requests."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}  # name -> bytes actually sent (Content-Length stays full)
        self.headers: dict[str, dict[str, str]] = {}
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.hits += 1
                name = self.path.lstrip("/")
                if name not in outer.files:
                    self.send_error(404, "Not Found")
                    return
                body = outer.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                for k, v in outer.headers.get(name, {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body[: outer.cut.get(name, len(body))])
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """A fresh torch hub cache per test (the shared one from conftest would carry files over)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def fake_mbv2(monkeypatch):
    """The MobileNetV2 release entry pointed at a generated file (its own checksum prefix)."""
    data, state = mbv2_file_bytes()
    w = dataclasses.replace(
        hub.IMAGENET["mobilenet_v2"], sha256=hashlib.sha256(data).hexdigest()[:8]
    )
    monkeypatch.setitem(hub.IMAGENET, "mobilenet_v2", w)
    return w, data, state


def leftovers() -> list[Path]:
    d = hub.cache_dir()
    return sorted(d.iterdir()) if d.is_dir() else []


def closed_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


def test_the_releases_are_the_standard_files():
    tv = hub.IMAGENET["mobilenet_v2"]
    assert tv.url == "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth"
    r50 = hub.IMAGENET["resnet50"]
    assert r50.url == "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    for w in (tv, r50):  # torch.hub's convention: the name carries the sha256 prefix
        assert w.filename == w.url.rsplit("/", 1)[1] and w.sha256 in w.filename
    hr = hub.IMAGENET["hrnet_w32"]
    assert hr.url.startswith("https://huggingface.co/timm/hrnet_w32.ms_in1k/resolve/")
    assert hr.url.endswith("/model.safetensors") and hr.etag_sha256


def test_cache_is_the_torch_hub_checkpoints_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert hub.cache_dir() == tmp_path / "hub" / "checkpoints"


def test_http_download_verified_and_cached(server, fake_mbv2, monkeypatch):
    w, data, _ = fake_mbv2
    server.files[w.filename] = data
    monkeypatch.setenv(hub.ENV_MIRROR, server.url + "/")
    path = hub.fetch(w, progress=False)
    assert path == hub.cache_dir() / w.filename and path.read_bytes() == data
    assert leftovers() == [path]  # no temporary file left
    assert server.hits == 1
    assert hub.fetch(w, progress=False) == path and server.hits == 1  # the cache is used


def test_file_url_download(tmp_path, fake_mbv2, monkeypatch):
    w, data, _ = fake_mbv2
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / w.filename).write_bytes(data)
    monkeypatch.setenv(hub.ENV_MIRROR, (tmp_path / "mirror").as_uri())
    path = hub.fetch(w, progress=True)
    assert path.parent == hub.cache_dir() and path.read_bytes() == data


def test_local_folder_is_used_in_place(tmp_path, fake_mbv2, monkeypatch):
    w, data, _ = fake_mbv2
    (tmp_path / w.filename).write_bytes(data)
    monkeypatch.setenv(hub.ENV_MIRROR, str(tmp_path))
    assert hub.fetch(w) == tmp_path / w.filename
    assert leftovers() == []


def test_local_folder_without_the_file(tmp_path, fake_mbv2, monkeypatch):
    w, _, _ = fake_mbv2
    monkeypatch.setenv(hub.ENV_MIRROR, str(tmp_path))
    with pytest.raises(PosenfsError, match=f"no {w.filename} there"):
        hub.fetch(w)


def test_wrong_checksum_leaves_nothing(server, fake_mbv2, monkeypatch):
    w, data, _ = fake_mbv2
    server.files[w.filename] = data[:-1] + bytes([data[-1] ^ 1])
    monkeypatch.setenv(hub.ENV_MIRROR, server.url)
    with pytest.raises(PosenfsError, match="checksum mismatch") as info:
        hub.fetch(w, progress=False)
    assert "\n" not in str(info.value)
    assert leftovers() == []


def test_truncated_transfer_leaves_nothing(server, fake_mbv2, monkeypatch):
    w, data, _ = fake_mbv2
    server.files[w.filename] = data
    server.cut[w.filename] = len(data) // 2
    monkeypatch.setenv(hub.ENV_MIRROR, server.url)
    with pytest.raises(PosenfsError, match="truncated|broke off"):
        hub.fetch(w, progress=False)
    assert leftovers() == []


def test_truncated_safetensors_file_without_a_known_digest(tmp_path, server, monkeypatch):
    """HRNet has no pinned digest: a complete-looking transfer of a cut file is still refused."""
    w = hub.IMAGENET["hrnet_w32"]
    data = safetensors_bytes()
    server.files[w.filename] = data[:-5]
    monkeypatch.setenv(hub.ENV_MIRROR, server.url)
    with pytest.raises(PosenfsError, match="truncated"):
        hub.fetch(w, progress=False)
    assert leftovers() == []
    server.files[w.filename] = data
    assert hub.fetch(w, progress=False).read_bytes() == data


def test_hub_etag_digest_is_checked(server, monkeypatch):
    w = hub.IMAGENET["hrnet_w32"]
    data = safetensors_bytes()
    server.files[w.filename] = data
    server.headers[w.filename] = {"X-Linked-Etag": '"' + "0" * 64 + '"'}
    monkeypatch.setenv(hub.ENV_MIRROR, server.url)
    with pytest.raises(PosenfsError, match="checksum mismatch"):
        hub.fetch(w, progress=False)
    assert leftovers() == []
    server.headers[w.filename] = {"X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"'}
    assert hub.fetch(w, progress=False).read_bytes() == data


def test_corrupt_cached_file_is_refused(fake_mbv2, monkeypatch):
    w, data, _ = fake_mbv2
    hub.cache_dir().mkdir(parents=True, exist_ok=True)
    (hub.cache_dir() / w.filename).write_bytes(b"not the file")
    with pytest.raises(PosenfsError, match="delete it to download again"):
        hub.fetch(w, progress=False)


def test_offline_is_one_clear_line(fake_mbv2, monkeypatch):
    w, _, _ = fake_mbv2
    monkeypatch.setenv(hub.ENV_MIRROR, closed_port_url())
    with pytest.raises(PosenfsError) as info:
        hub.fetch(w, progress=False)
    msg = str(info.value)
    assert "cannot download" in msg and "offline?" in msg and hub.ENV_MIRROR in msg
    assert "\n" not in msg and leftovers() == []


def test_http_404(server, fake_mbv2, monkeypatch):
    w, _, _ = fake_mbv2
    monkeypatch.setenv(hub.ENV_MIRROR, server.url)
    with pytest.raises(PosenfsError, match="HTTP 404"):
        hub.fetch(w, progress=False)
    assert leftovers() == []


def test_no_imagenet_weights_for_a_fabric_backbone():
    with pytest.raises(PosenfsError, match="no ImageNet weights for the fabric backbone"):
        hub.resolve_pretrained("imagenet", "fabric")
    assert hub.resolve_pretrained("some/file.pth", "fabric") == Path("some/file.pth")


def test_build_model_with_imagenet_loads_the_file(server, fake_mbv2, monkeypatch):
    w, data, state = fake_mbv2
    server.files[w.filename] = data
    monkeypatch.setenv(hub.ENV_MIRROR, server.url)
    cfg = ModelConfig(backbone="mobilenet_v2", pretrained="imagenet", channels=2, parts=1)
    model = build_model(cfg, get_layout("mpii"))
    ours = model.backbone.state_dict()
    assert torch.equal(ours["features.16.conv.2.weight"], state["features.16.conv.2.weight"])
    report = model.backbone.pretrained_report
    assert report.unused == {"features.17": 1, "features.18": 1, "classifier": 2}
    assert cfg.pretrained == "imagenet"  # the recipe keeps the name, not the cache path
    # structure-only builds never download
    server.files.clear()
    build_model(cfg, get_layout("mpii"), load_pretrained=False)
    assert server.hits == 1


def test_search_with_pretrained_imagenet_reports_the_load(tmp_path, server, fake_mbv2, monkeypatch):
    w, data, _ = fake_mbv2
    server.files[w.filename] = data
    monkeypatch.setenv(hub.ENV_MIRROR, server.url)
    args = ["--device", "cpu", "search", "--recipe", "synthetic/tiny", "--epochs", "1"]
    args += ["--set", "data.synthetic.train_images=4", "--set", "data.synthetic.val_images=2"]
    args += ["--pretrained", "imagenet", "--project", str(tmp_path / "runs"), "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    n = len(MobileNetV2Backbone().state_dict())  # every tensor of ours, BN counters included
    assert f"pretrained: loaded {n} tensors of torchvision-named MobileNetV2 weights" in out
    assert f"(features {n})" in out and "features.17 1, features.18 1, classifier 2" in out
    log = (tmp_path / "runs/search/exp/log.txt").read_text()
    assert f"pretrained: loaded {n} tensors" in log


def test_search_offline_with_imagenet_is_rc2_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(hub.ENV_MIRROR, closed_port_url())
    args = ["--device", "cpu", "search", "--recipe", "synthetic/tiny", "--epochs", "1"]
    args += ["--pretrained", "imagenet", "--project", str(tmp_path / "runs"), "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "cannot download" in lines[0] and "Traceback" not in result.output
    assert not list((tmp_path / "runs").rglob("*.safetensors"))
    assert leftovers() == []


def test_safetensors_completeness_check(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(safetensors_bytes())
    assert hub._check_safetensors(path) is None
    path.write_bytes(safetensors_bytes() + b"extra")
    assert "header describes" in hub._check_safetensors(path)
    header = json.dumps({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header) + 100) + header)
    assert "truncated in its header" in hub._check_safetensors(path)
