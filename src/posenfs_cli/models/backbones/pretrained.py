"""Loading ImageNet/pose weights into a backbone from a local file, with an explicit key map.

Nothing is downloaded: ``model.pretrained`` names a file on disk, either ``.safetensors`` or a
torch checkpoint (read with ``weights_only=True``). Loading is strict in both directions:

* checkpoint keys for which ``unused(key)`` is true belong to parts we do not build on purpose
  (a classifier, the last stage, ...) and are dropped;
* every other key is passed through ``key_map``, which names one of our parameters or buffers
  (or returns ``None`` when it knows no counterpart); a key that maps to nothing of ours is an
  error;
* every parameter/buffer of ours must be provided with the right shape (only BatchNorm's
  ``num_batches_tracked`` counters may be absent: older checkpoints do not have them).

Any problem raises :class:`~posenfs_cli.errors.PosenfsError` with a single message naming the
file and (up to ``MAX_LISTED`` of) the offending keys; a file none of whose keys match is
reported as such. A successful load never passes silently: it returns a :class:`LoadReport`
(also kept as ``module.pretrained_report``) counting what was loaded per top-level module and
what in the file was ignored (parts we do not build, and everything outside a ``backbone.``
subtree, e.g. the heads of a whole pose model), which the trainer prints.

Public API::

    KeyMap = Callable[[str], str | None]
    LoadReport(path, source, loaded, unused, outside); .lines() -> list[str]
    read_checkpoint(path) -> StateDict (a dict[str, Tensor]; .outside counts dropped subtrees)
    apply_checkpoint(module, state, key_map, unused=None, source_name="", path=None) -> LoadReport
    load_pretrained(module, path, key_map, unused=None, source_name="") -> LoadReport
    prefix_matcher(*prefixes) -> Callable[[str], bool]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from posenfs_cli.errors import PosenfsError

KeyMap = Callable[[str], "str | None"]
"""Maps a checkpoint key to our state-dict key, or ``None`` when it has no counterpart."""

MAX_LISTED = 10

# Containers that training scripts commonly wrap a state dict in, tried in this order.
_CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "net")
_NUM_BATCHES = "num_batches_tracked"


class StateDict(dict[str, Any]):
    """A flat ``{name: tensor}`` read from a file; ``outside`` counts the tensors of subtrees
    dropped while unwrapping it (top-level name -> tensors), e.g. a pose model's head."""

    outside: dict[str, int]

    def __init__(self, *args: Any, outside: Mapping[str, int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outside = dict(outside or {})


def _top(key: str, depth: int = 1) -> str:
    return ".".join(key.split(".")[:depth])


def _count(keys: Iterable[str], depth: int = 1) -> dict[str, int]:
    return dict(Counter(_top(k, depth) for k in keys))


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items())


def _group_unused(keys: Iterable[str], our_tops: set[str]) -> dict[str, int]:
    """Counts by top-level name, one level deeper inside a module we do build (features.17)."""
    return dict(Counter(_top(k, 2 if _top(k) in our_tops else 1) for k in keys))


@dataclass
class LoadReport:
    """What a pretrained load took from a file and what it left there."""

    path: Path | None
    source: str
    loaded: dict[str, int]  # our top-level module -> tensors loaded into it
    unused: dict[str, int] = field(default_factory=dict)  # file prefix -> tensors we don't build
    outside: dict[str, int] = field(default_factory=dict)  # file subtree -> tensors not read

    @property
    def total(self) -> int:
        return sum(self.loaded.values())

    def lines(self) -> list[str]:
        where = f" from {self.path}" if self.path is not None else ""
        what = f"{self.source} weights" if self.source else "weights"
        out = [
            f"pretrained: loaded {self.total} tensors of {what}{where} into the backbone "
            f"({_counts(self.loaded)})"
        ]
        if self.unused:
            n = sum(self.unused.values())
            out.append(
                f"pretrained: ignored {n} tensors of layers the backbone does not build "
                f"({_counts(self.unused)})"
            )
        if self.outside:
            n = sum(self.outside.values())
            out.append(
                f"pretrained: ignored {n} tensors outside the file's backbone "
                f"({_counts(self.outside)}): model.pretrained loads a backbone only, the part "
                "networks start from scratch (to use a whole trained model: posenfs import)"
            )
        return out


def identity_map(key: str) -> str:
    """Key map for checkpoints that already use our names."""
    return key


def prefix_matcher(*prefixes: str) -> Callable[[str], bool]:
    """Predicate true for keys equal to a prefix or under it (``"fc"`` matches ``fc.weight``)."""
    stems = tuple(p.rstrip(".") for p in prefixes)

    def match(key: str) -> bool:
        return any(key == s or key.startswith(s + ".") for s in stems)

    return match


def _listing(keys: Iterable[str]) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:MAX_LISTED])
    if len(keys) > MAX_LISTED:
        shown += f", ... ({len(keys) - MAX_LISTED} more)"
    return shown


def tensor_mapping(obj: Any, path: str | Path) -> tuple[dict[str, Tensor], bool]:
    """The tensors of a loaded state-dict mapping by name, and whether a ``module.`` prefix on
    every name was removed (DataParallel / DistributedDataParallel add it)."""
    if not isinstance(obj, Mapping):
        raise PosenfsError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    state = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state:
        raise PosenfsError(f"{path} holds no tensors")
    wrapped = all(k.startswith("module.") for k in state)
    if wrapped:
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state, wrapped


def _unwrap(obj: Any, path: Path) -> StateDict:
    """Find the flat ``{name: tensor}`` mapping inside a loaded checkpoint object."""
    while isinstance(obj, Mapping) and not any(isinstance(v, Tensor) for v in obj.values()):
        inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    state, _ = tensor_mapping(obj, path)
    # Detector / pose-framework checkpoints (mmdet, mmpose, ...): keep the backbone subtree.
    outside: dict[str, int] = {}
    if any(k.startswith("backbone.") for k in state):
        outside = _count(k for k in state if not k.startswith("backbone."))
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    return StateDict(state, outside=outside)


def read_checkpoint(path: str | Path) -> StateDict:
    """Read a ``.safetensors`` or torch weights file and return its flat state dict (CPU).

    Common wrappers are removed: a ``state_dict``/``model``/... container, a ``module.`` prefix
    on every key, and a ``backbone.`` subtree (other subtrees are then ignored).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise PosenfsError(f"pretrained weights file not found: {path}")
    try:
        with path.open("rb") as fh:
            head = fh.read(9)
        # A safetensors file starts with an 8-byte header length followed by a JSON header.
        if path.suffix == ".safetensors" or head[8:9] == b"{":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with arbitrary objects, ...
        raise PosenfsError(f"cannot read weights from {path}: {exc}") from exc
    return _unwrap(obj, path)


def apply_checkpoint(
    module: nn.Module,
    state: Mapping[str, Tensor],
    key_map: KeyMap,
    unused: Callable[[str], bool] | None = None,
    source_name: str = "",
    path: str | Path | None = None,
) -> LoadReport:
    """Load an already-read checkpoint ``state`` into ``module`` through ``key_map`` (strict).

    Checkpoint keys for which ``unused(key)`` is true are dropped first; every other key must
    be mapped by ``key_map`` onto one of our keys. ``source_name`` (e.g. ``"MobileNetV2 (timm
    names)"``) and ``path`` only make the messages clearer. Returns (and stores as
    ``module.pretrained_report``) what was loaded and what was ignored.
    """
    what = f"{source_name} weights" if source_name else "weights"
    where = f" from {path}" if path is not None else ""
    ours = module.state_dict()
    mapped: dict[str, Tensor] = {}
    origin: dict[str, str] = {}  # our key -> the checkpoint key that provided it
    unexpected: list[str] = []
    duplicated: list[str] = []
    mismatched: list[str] = []
    dropped: list[str] = []
    for key, tensor in state.items():
        if unused is not None and unused(key):
            dropped.append(key)
            continue
        target = key_map(key)
        if target is None:
            unexpected.append(key)
            continue
        shown = key if target == key else f"{key} (-> {target})"
        if target not in ours:
            unexpected.append(shown)
        elif target in origin:
            duplicated.append(f"{origin[target]} and {shown}")
        else:
            origin[target] = key
            if tuple(tensor.shape) == tuple(ours[target].shape):
                mapped[target] = tensor
            else:
                mismatched.append(
                    f"{shown}: file {list(tensor.shape)} vs model {list(ours[target].shape)}"
                )
    if not origin:
        raise PosenfsError(
            f"cannot load {what}{where}: none of its {len(state)} tensors match this backbone "
            f"(its keys look like {_listing(list(state)[:3])}; ours like "
            f"{_listing(list(ours)[:3])})"
        )
    # Keys with a wrong shape count as mismatched, not also as missing.
    missing = [k for k in ours if k not in origin and not k.endswith(_NUM_BATCHES)]

    found = (
        ("missing {} key(s)", missing),
        ("{} shape mismatch(es)", mismatched),
        ("{} unexpected key(s)", unexpected),
        ("{} key(s) mapped twice", duplicated),
    )
    problems = [f"{label.format(len(keys))}: {_listing(keys)}" for label, keys in found if keys]
    if problems:
        raise PosenfsError(f"cannot load {what}{where}: " + "; ".join(problems))

    full = {k: mapped.get(k, v) for k, v in ours.items()}
    with torch.no_grad():
        module.load_state_dict(full, strict=True)
    report = LoadReport(
        Path(path) if path is not None else None,
        source_name,
        _count(mapped),
        unused=_group_unused(dropped, {_top(k) for k in ours}),
        outside=dict(getattr(state, "outside", {})),
    )
    # Module.__setattr__ stores any value; its stub only admits Tensor | Module
    module.pretrained_report = report  # type: ignore[assignment]  # see the line above
    return report


def load_pretrained(
    module: nn.Module,
    path: str | Path,
    key_map: KeyMap,
    unused: Callable[[str], bool] | None = None,
    source_name: str = "",
) -> LoadReport:
    """Read ``path`` (see :func:`read_checkpoint`) and load it with :func:`apply_checkpoint`."""
    state = read_checkpoint(path)
    return apply_checkpoint(module, state, key_map, unused, source_name, path=Path(path))
