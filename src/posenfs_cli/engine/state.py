"""Training state <-> safetensors: nested dicts/lists of tensors, arrays and scalars.

Optimiser, scaler and RNG states are nested Python structures holding tensors. Tensors and numpy
arrays go into the safetensors payload under generated keys; the rest (the skeleton) is JSON in
the metadata, with dict keys and tuples encoded so the structure round-trips exactly (optimiser
states use int keys).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from posenfs_cli.engine.checkpoint import atomic_save_file
from posenfs_cli.errors import PosenfsError


def flatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors/arrays in ``obj`` by references into ``tensors``; return the skeleton."""
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return {"__ndarray__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[flatten(k, tensors), flatten(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [flatten(v, tensors) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot serialise {type(obj).__name__} in training state")


def unflatten(skel: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(skel, dict):
        if "__tensor__" in skel:
            return tensors[skel["__tensor__"]]
        if "__ndarray__" in skel:
            return tensors[skel["__ndarray__"]].numpy()
        if "__tuple__" in skel:
            return tuple(unflatten(v, tensors) for v in skel["__tuple__"])
        if "__dict__" in skel:
            return {unflatten(k, tensors): unflatten(v, tensors) for k, v in skel["__dict__"]}
    if isinstance(skel, list):
        return [unflatten(v, tensors) for v in skel]
    return skel


def save_state(
    path: str | Path, state: dict[str, Any], metadata: dict[str, str] | None = None
) -> Path:
    """Atomically write a nested training state as safetensors (one rename = one commit).

    ``metadata`` holds small strings readable without loading the tensors (``state_metadata``).
    """
    tensors: dict[str, torch.Tensor] = {}
    skeleton = flatten(state, tensors)
    if not tensors:
        tensors["__empty__"] = torch.zeros(0)
    meta = {**(metadata or {}), "posenfs_train_state": json.dumps(skeleton)}
    return atomic_save_file(tensors, path, meta)


def state_metadata(path: str | Path) -> dict[str, str]:
    """The header metadata of a training state, without reading its tensors."""
    p = Path(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise PosenfsError(f"{p}: unreadable training state ({_first_line(exc)})") from exc
    if "posenfs_train_state" not in meta:
        raise PosenfsError(f"{p} is not a posenfs training state")
    return meta


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_state(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise PosenfsError(f"training state not found: {p}")
    meta = state_metadata(p)
    try:
        tensors = load_file(str(p))
        skeleton = json.loads(meta["posenfs_train_state"])
        state = unflatten(skeleton, tensors)
    except Exception as exc:  # damaged payload or skeleton
        raise PosenfsError(f"{p}: unreadable training state ({_first_line(exc)})") from exc
    if not isinstance(state, dict) or "epoch" not in state:
        raise PosenfsError(f"{p}: unreadable training state (no epoch)")
    return state


def resume_kind(command: str, strategy: str, epoch: int) -> dict[str, str]:
    """Header metadata that says which command/strategy a training state belongs to."""
    return {"command": command, "strategy": strategy, "epoch": str(epoch)}


def check_resume_kind(run: Path, meta: dict[str, str], command: str, strategy: str) -> None:
    """Refuse ``search --resume`` on a train run (and the reverse) with one clear line."""
    was = meta.get("command")
    if was is not None and was != command:
        raise PosenfsError(
            f"--resume {run}: this is a {was} run; continue it with `posenfs {was} --resume`"
        )
    had = meta.get("strategy")
    if had is not None and had != strategy:
        raise PosenfsError(
            f"--resume {run}: the run used strategy {had!r}, its config now says {strategy!r}"
        )
