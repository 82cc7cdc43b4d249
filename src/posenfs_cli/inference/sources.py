"""Where ``posenfs predict`` reads frames from: an image, a folder, a video file or a webcam.

Every source yields :class:`Frame` objects in a stable order. A folder keeps going past an
unreadable file (the frame comes back with ``image=None`` and a reason, so the caller can warn
and count it) because one corrupt file should not cost a whole batch job; a single image, a
video or a webcam that cannot be opened is a user error (:class:`PosenfsError`, one line).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from posenfs_cli.errors import PosenfsError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2"})
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif"}
)
DEFAULT_FPS = 25.0
_WEBCAM = re.compile(r"webcam(?::(\d+))?", re.IGNORECASE)


@dataclass
class Frame:
    """One image or video frame; ``image`` is BGR uint8 [H, W, 3] or None when unreadable."""

    index: int
    name: str
    image: np.ndarray | None
    path: Path | None = None
    error: str | None = None


def read_image(path: Path) -> tuple[np.ndarray | None, str | None]:
    """(BGR image, None) or (None, reason). Decodes from bytes so non-ASCII paths work too."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}"
    if data.size == 0:
        return None, f"{path} is empty"
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        return None, f"{path} is not a readable image (corrupt or unsupported format)"
    return image, None


@contextlib.contextmanager
def _quiet_opencv():
    """Silence OpenCV's own WARN lines while probing a device/file: we report failures ourselves."""
    try:
        from cv2.utils import logging as cvlog
    except ImportError:  # pragma: no cover - very old OpenCV
        yield
        return
    level = cvlog.getLogLevel()
    cvlog.setLogLevel(cvlog.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        cvlog.setLogLevel(level)


def _open_capture(target: str | int) -> cv2.VideoCapture:
    with _quiet_opencv():
        return cv2.VideoCapture(target)


class Source:
    """Base class: ``kind``, ``name`` (for output files), ``total`` (None if unknown), ``fps``."""

    kind: str = ""
    name: str = ""
    total: int | None = None
    fps: float = DEFAULT_FPS

    def __iter__(self) -> Iterator[Frame]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def is_stream(self) -> bool:
        """Video and webcam sources produce one output file for all their frames."""
        return self.kind in ("video", "webcam")


class ImageFiles(Source):
    """A single image or the images of a folder (sorted by name, non-images ignored)."""

    def __init__(
        self,
        paths: list[Path],
        kind: str,
        name: str,
        max_frames: int | None = None,
        videos: list[Path] | None = None,
    ):
        self.paths = paths[:max_frames] if max_frames is not None else paths
        self.kind = kind
        self.name = name
        self.total = len(self.paths)
        self.videos = list(videos or [])  # videos/gifs found in a folder, not processed

    def __iter__(self) -> Iterator[Frame]:
        for i, path in enumerate(self.paths):
            image, error = read_image(path)
            yield Frame(i, path.stem, image, path, error)


class VideoStream(Source):
    """Frames of a video file or a webcam via ``cv2.VideoCapture`` (opened eagerly to fail fast)."""

    def __init__(self, target: str | int, kind: str, name: str, max_frames: int | None = None):
        self.kind = kind
        self.name = name
        self.max_frames = max_frames
        self._cap = _open_capture(target)
        what = f"webcam {target}" if kind == "webcam" else f"video {target}"
        if not self._cap.isOpened():
            self._cap.release()
            raise PosenfsError(f"cannot open {what} (missing codec, corrupt file or no device)")
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise PosenfsError(f"cannot decode any frame of {what} (corrupt or empty)")
        self._first: np.ndarray | None = first
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps < 1000.0 else DEFAULT_FPS
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if kind == "video" else 0
        total = count if count > 0 else None
        if max_frames is not None:
            total = max_frames if total is None else min(total, max_frames)
        self.total = total

    def __iter__(self) -> Iterator[Frame]:
        try:
            i = 0
            while self.max_frames is None or i < self.max_frames:
                if self._first is not None:
                    image, self._first = self._first, None
                else:
                    ok, image = self._cap.read()
                    if not ok or image is None:
                        break
                yield Frame(i, f"{self.name}_{i:06d}", image)
                i += 1
        finally:
            self._cap.release()

    def close(self) -> None:
        self._cap.release()


def open_source(spec: str | Path, max_frames: int | None = None) -> Source:
    """Parse SRC: ``webcam[:id]``, a folder, an image file or a video file."""
    if max_frames is not None and max_frames < 1:
        raise PosenfsError("--max-frames must be >= 1")
    text = str(spec)
    m = _WEBCAM.fullmatch(text)
    if m and not Path(text).exists():
        cam = int(m.group(1) or 0)
        return VideoStream(cam, "webcam", f"webcam{cam}", max_frames)
    path = Path(text)
    if not path.exists():
        raise PosenfsError(
            f"{path} does not exist (give an image, a folder of images, a video or webcam[:id])"
        )
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
        if not images:
            also = (
                f"; it has {len(videos)} video(s) (e.g. {videos[0].name}): give each video as SRC"
                if videos
                else ""
            )
            raise PosenfsError(
                f"folder {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}){also}"
            )
        return ImageFiles(images, "folder", path.resolve().name or "images", max_frames, videos)
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return VideoStream(str(path), "video", path.stem, max_frames)
    image, error = read_image(path)
    if image is not None:
        return ImageFiles([path], "image", path.stem, max_frames)
    if suffix in IMAGE_SUFFIXES:
        raise PosenfsError(error or f"{path} is not a readable image")
    # unknown extension and not an image: last chance as a video, else say what was tried
    cap = _open_capture(str(path))
    readable = cap.isOpened() and cap.read()[0]
    cap.release()
    if readable:
        return VideoStream(str(path), "video", path.stem, max_frames)
    raise PosenfsError(f"{path} is neither a readable image nor a readable video")


__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "Frame",
    "ImageFiles",
    "Source",
    "VideoStream",
    "open_source",
    "read_image",
]
