"""ImageNet backbone weights by name: ``model.pretrained: imagenet``.

The files are the standard releases: torchvision's own MobileNetV2 and ResNet-50 files (the ones
``torchvision.models.*(weights="IMAGENET1K_V1")`` downloads) and timm's ``hrnet_w32.ms_in1k``
safetensors from the Hugging Face hub. They are downloaded once into the torch hub cache
(``torch.hub.get_dir()/checkpoints``, i.e. ``$TORCH_HOME/hub/checkpoints``), shared with
torchvision, and checked before use:

* torchvision files carry the first 8 hex digits of their SHA-256 in their name
  (``mobilenet_v2-b0353104.pth``); the digest must start with them, as ``torch.hub`` checks;
* the HRNet file is pinned to one commit of the hub repository; it is checked against the
  SHA-256 the hub sends (``X-Linked-Etag``) when downloaded from the hub, and every safetensors
  file must be complete (its header's tensor offsets must end exactly at the end of the file).

``POSENFS_WEIGHTS_URL`` points at a mirror: an ``http(s)://`` or ``file://`` base URL, or a local
folder, holding the files under the names of :data:`IMAGENET` (``<base>/<filename>``). A file
already in the cache wins; otherwise a local folder is used in place and a URL is downloaded
into the cache. Downloads are atomic: a temporary
file next to the target, renamed when complete and verified, deleted on any failure.

Public API::

    IMAGENET: dict[str, Weights]                  # backbone name -> the release
    ENV_MIRROR = "POSENFS_WEIGHTS_URL"
    cache_dir() -> Path
    fetch(weights, progress=True) -> Path         # the verified local file
    resolve_pretrained(spec, backbone, progress=True) -> Path   # "imagenet" or a file path
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import struct
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from posenfs_cli.errors import PosenfsError

ENV_MIRROR = "POSENFS_WEIGHTS_URL"
TIMEOUT_S = 30.0
CHUNK = 1 << 20


@dataclass(frozen=True)
class Weights:
    backbone: str
    filename: str  # the name in the cache and on a mirror
    url: str
    sha256: str | None  # the full digest or a prefix of it; None: see ``etag_sha256``
    source: str
    etag_sha256: bool = False  # the server's X-Linked-Etag is the SHA-256 (Hugging Face hub)


_TV = "https://download.pytorch.org/models/"
_HF_HRNET = (
    "https://huggingface.co/timm/hrnet_w32.ms_in1k/resolve/"
    "d3f87a845807b80ae4cfd95815416cfbe90fab99/model.safetensors"
)

IMAGENET: dict[str, Weights] = {
    "mobilenet_v2": Weights(
        "mobilenet_v2",
        "mobilenet_v2-b0353104.pth",
        _TV + "mobilenet_v2-b0353104.pth",
        "b0353104",
        "torchvision MobileNet_V2 IMAGENET1K_V1",
    ),
    "resnet50": Weights(
        "resnet50",
        "resnet50-0676ba61.pth",
        _TV + "resnet50-0676ba61.pth",
        "0676ba61",
        "torchvision ResNet50 IMAGENET1K_V1",
    ),
    "hrnet_w32": Weights(
        "hrnet_w32",
        "timm_hrnet_w32.ms_in1k.safetensors",
        _HF_HRNET,
        None,
        "timm hrnet_w32.ms_in1k",
        etag_sha256=True,
    ),
}


def cache_dir() -> Path:
    """Where downloaded weights live: torch hub's ``checkpoints`` folder (``$TORCH_HOME``)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _check_safetensors(path: Path) -> str | None:
    """Why ``path`` is not a complete safetensors file, or None when it is."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return "shorter than a safetensors header"
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            return "truncated in its header"
        try:
            header = json.loads(fh.read(n))
        except ValueError:
            return "not a safetensors file (unreadable header)"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    expected = 8 + n + max(ends, default=0)
    if expected != size:
        return f"{size:,} bytes where its header describes {expected:,} (truncated?)"
    return None


def _verify(path: Path, w: Weights, expected: str | None) -> None:
    """Raise if ``path`` is not the release ``w`` (digest prefix/full, or completeness)."""
    if expected:
        digest = _sha256(path)
        if not digest.startswith(expected.lower()):
            raise PosenfsError(
                f"{path}: checksum mismatch for {w.source} (sha256 {digest[:16]}..., expected "
                f"{expected[:16]}...): a corrupt or different file; delete it to download again"
            )
    if w.filename.endswith(".safetensors"):
        problem = _check_safetensors(path)
        if problem:
            raise PosenfsError(f"{path}: {problem}; delete it to download again")


def _mirror_source(w: Weights) -> str | Path | None:
    base = os.environ.get(ENV_MIRROR, "").strip()
    if not base:
        return None
    if "://" in base:
        return base.rstrip("/") + "/" + urllib.parse.quote(w.filename)
    return Path(base).expanduser() / w.filename


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("[bold]download[/] {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True, emoji=False),
        disable=not enabled,
        transient=True,
    )


def _download(url: str, target: Path, w: Weights, progress: bool) -> None:
    """``url`` -> ``target`` through a temporary file, verified, then renamed (atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "posenfs"})
        try:
            resp = urllib.request.urlopen(req, timeout=TIMEOUT_S)  # noqa: S310 (http/file only)
        except urllib.error.HTTPError as exc:
            raise PosenfsError(
                f"cannot download {w.source} weights from {url}: HTTP {exc.code} {exc.reason}"
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PosenfsError(
                f"cannot download {w.source} weights from {url} ({reason}): offline? Put "
                f"{w.filename} in {target.parent} or in a folder named by {ENV_MIRROR}, "
                "or set model.pretrained to a local file"
            ) from exc
        with resp, os.fdopen(fd, "wb") as out:
            fd = -1
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            expected = w.sha256
            if w.etag_sha256 and not expected:
                etag = (resp.headers.get("X-Linked-Etag") or "").strip('"W/ ')
                expected = etag if len(etag) == 64 else None
            got = 0
            with _progress(progress) as bar:
                task = bar.add_task(w.filename, total=total)
                try:
                    for block in iter(lambda: resp.read(CHUNK), b""):
                        out.write(block)
                        got += len(block)
                        bar.advance(task, len(block))
                except (OSError, http.client.HTTPException) as exc:
                    raise PosenfsError(
                        f"download of {w.source} weights from {url} broke off after "
                        f"{got:,} bytes ({exc})"
                    ) from exc
        if total is not None and got != total:
            raise PosenfsError(
                f"download of {w.source} weights from {url} is truncated: {got:,} of "
                f"{total:,} bytes"
            )
        if got == 0:
            raise PosenfsError(f"download of {w.source} weights from {url} is empty")
        try:
            _verify(tmp, w, expected)
        except PosenfsError as exc:
            raise PosenfsError(f"downloaded from {url}: {exc}") from exc
        os.replace(tmp, target)
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def fetch(w: Weights, progress: bool = True) -> Path:
    """The verified local file of release ``w``: the cache, a mirror folder, or a download."""
    target = cache_dir() / w.filename
    if target.is_file():
        _verify(target, w, w.sha256)
        return target
    source = _mirror_source(w)
    if isinstance(source, Path):  # a local folder: used in place
        if not source.is_file():
            raise PosenfsError(
                f"{ENV_MIRROR}={os.environ[ENV_MIRROR]}: no {w.filename} there "
                f"(the {w.source} weights)"
            )
        _verify(source, w, w.sha256)
        return source
    _download(source or w.url, target, w, progress)
    return target


def resolve_pretrained(spec: str, backbone: str, progress: bool = True) -> Path:
    """``model.pretrained`` -> a local file: ``imagenet`` is fetched, anything else is a path."""
    if spec.strip().lower() != "imagenet":
        return Path(spec).expanduser()
    if backbone not in IMAGENET:
        raise PosenfsError(
            f"model.pretrained: imagenet: there are no ImageNet weights for the {backbone} "
            f"backbone (only {', '.join(sorted(IMAGENET))}); use a weights file or null"
        )
    return fetch(IMAGENET[backbone], progress)


__all__ = ["ENV_MIRROR", "IMAGENET", "Weights", "cache_dir", "fetch", "resolve_pretrained"]
