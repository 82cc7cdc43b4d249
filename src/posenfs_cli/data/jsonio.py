"""JSON in and out, in one place: dataset files checked, annotation and detection files read
with one-line errors that name the file, and result files written valid (no bare NaN) and
whole."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from posenfs_cli.errors import PosenfsError, existing_file


def read_json(path: Path) -> Any:
    """JSON from ``path`` or a one-line PosenfsError naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError) as exc:
        raise PosenfsError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise PosenfsError(f"{path} is not valid JSON: {exc}") from None


def _first_bad(values: Sequence[Any], shape: tuple[int, ...]) -> tuple[int, str]:
    """(index, what is wrong) for the first value that is not a finite-able ``shape`` array."""
    for i, v in enumerate(values):
        try:
            got = np.asarray(v, dtype=np.float64).shape
        except (TypeError, ValueError):
            return i, "a non-numeric or ragged value"
        if got != shape:
            return i, f"shape {list(got)}"
    return -1, "?"


def stack_field(
    values: Sequence[Any],
    shape: tuple[int, ...],
    source: str,
    what: str,
    expect: str,
    indices: Sequence[int] | None = None,
    item: str = "record",
) -> np.ndarray:
    """Stack one field of all records into [N, *shape] float64, or name the bad record.

    Non-finite values (NaN, inf) are rejected too. ``indices`` maps positions in ``values`` to
    record indices for the message when only some records carry the field; ``item`` names
    what a record is called in the message ("record", "annotation").
    """
    if len(values) == 0:
        return np.zeros((0, *shape), dtype=np.float64)
    where = (lambda i: i) if indices is None else (lambda i: indices[i])
    try:
        arr = np.asarray(values, dtype=np.float64)
        ok = arr.shape == (len(values), *shape)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        i, problem = _first_bad(values, shape)
        raise PosenfsError(
            f"{source}: {item} {where(i)} has {what} with {problem}, expected {expect}"
        )
    finite = np.isfinite(arr.reshape(len(values), -1)).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise PosenfsError(
            f"{source}: {item} {where(i)} has a non-finite value (NaN/inf) in {what}"
        )
    return arr


PERSON_CATEGORY = 1


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _detection_problem(det: Any) -> str | None:
    """What is wrong with one detection entry, or None."""
    if not isinstance(det, dict):
        return f"is a {type(det).__name__}, not an object"
    for key in ("image_id", "category_id", "bbox", "score"):
        if key not in det:
            return f"has no {key!r}"
    for key in ("image_id", "category_id"):
        v = det[key]
        if isinstance(v, bool) or not isinstance(v, int):
            return f"has a non-integer {key!r} ({v!r})"
    bbox = det["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_is_number, bbox)):
        return f"has bbox {bbox!r}; expected 4 finite numbers [x, y, w, h]"
    if bbox[2] < 0 or bbox[3] < 0:
        return f"has a negative box width/height in {bbox!r}"
    if not _is_number(det["score"]):
        return f"has a non-numeric score ({det['score']!r})"
    return None


def load_detections(path: str | Path, score_thr: float = 0.0) -> list[dict[str, Any]]:
    """Person detections from a COCO detection-results JSON, validated.

    The file is a list of ``{image_id, category_id, bbox: [x, y, w, h], score}``. Keeps
    category 1 with ``score >= score_thr`` (HRNet's ``image_thre`` rule). Returns dicts with
    ``image_id`` (int), ``category_id`` (1), ``bbox`` (4 floats) and ``score`` (float).
    """
    p = existing_file(path, "detection file {p} does not exist")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PosenfsError(f"detection file {p} is not valid JSON: {e}") from None
    if not isinstance(data, list):
        raise PosenfsError(
            f"detection file {p} must hold a JSON list of detections "
            f"{{image_id, category_id, bbox [x, y, w, h], score}}, found a {type(data).__name__}"
        )
    kept: list[dict[str, Any]] = []
    for i, det in enumerate(data):
        problem = _detection_problem(det)
        if problem:
            raise PosenfsError(
                f"detection file {p}: entry {i} {problem} "
                "(each entry must be {image_id, category_id, bbox [x, y, w, h], score})"
            )
        if det["category_id"] == PERSON_CATEGORY and det["score"] >= score_thr:
            kept.append(
                {
                    "image_id": int(det["image_id"]),
                    "category_id": PERSON_CATEGORY,
                    "bbox": [float(v) for v in det["bbox"]],
                    "score": float(det["score"]),
                }
            )
    return kept


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf floats (e.g. the loss of a broken model, a never-labelled PCKh
    column) replaced by None, so the file is JSON every reader accepts."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(path: Path, data: Any) -> Path:
    """Valid JSON (no bare NaN), written to a temporary name first: never half a file."""
    text = json.dumps(data, allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def split_names(split: str, same: Sequence[tuple[str, ...]]) -> list[str]:
    """``split``, then the other names of its group in ``same`` (e.g. val, valid, val2017): the
    file names a dataset's own release and ``posenfs data synth`` give one split."""
    group = next((g for g in same if split in g), ())
    return [split, *(n for n in group if n != split)]


def first_file(paths: Iterable[Path]) -> Path:
    """The first of ``paths`` that is a file, or the first one when none is (for the error)."""
    paths = list(paths)
    return next((p for p in paths if p.is_file()), paths[0])


def expect_file(path: Path, what: str, layout_hint: str) -> None:
    """Raise the one-line user error for a missing dataset file or folder."""
    if not path.exists():
        raise PosenfsError(
            f"{what} not found: {path} (expected layout: {layout_hint}; "
            "`posenfs data synth` writes a dataset in this layout to try)"
        )
