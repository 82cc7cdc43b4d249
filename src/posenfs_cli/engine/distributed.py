"""DDP helpers: ``torchrun --nproc_per_node N posenfs search ...`` just works.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; we then use NCCL on CUDA and gloo on CPU. Only
rank 0 writes files and prints; metrics are reduced (losses) or gathered (predictions).

Lifecycle of a distributed run (``session``):

- the group is created with the recipe's collective timeout (``train.dist_timeout_s``), so a
  rank that stops answering ends every rank within that time;
- success: every rank meets at one last barrier (the last collective), then the group is
  destroyed once;
- failure on any rank: that rank posts a one-line error to the job's key-value store and exits
  (its sockets close, so peers blocked in a collective fail at once instead of hanging); the
  peers read the post and rank 0 prints ``rank R: <error>``; every rank exits non-zero;
- the worker process then ends with ``os._exit`` after flushing output (``end_process``). In
  torch 2.13 a DDP model keeps references to the gloo group that ``destroy_process_group``
  cannot release, so the group's native threads (two ``pt_gloo_runloop``, one
  ``gloo_tcp_loop``) run until the process dies; letting the interpreter finalize and the C++
  runtime destroy its statics around them is what sporadically aborted rank 1 at exit.
- elastic restarts (``torchrun --max-restarts N``): the first attempt records its run folder
  in the launcher's store; a restarted group finds it there and resumes from the last
  committed training state of that folder.

``POSENFS_TEST_FAULT`` (test-only fault injection, see ``fault_point``) makes one rank raise or
SIGKILL itself at a given epoch and step of the first attempt.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from posenfs_cli.device import select_device
from posenfs_cli.errors import USER_ERRORS, PosenfsError, user_message

FAULT_ENV = "POSENFS_TEST_FAULT"
_ERROR_KEY = "posenfs/error"
_RUN_DIR_KEY = "posenfs/run_dir"
_PEER_GRACE_S = 5.0  # how long a rank whose collective broke waits for the peer's error post

_state: dict[str, Any] = {"ran": False}


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class RankFailed(PosenfsError):
    """A distributed run ended because a rank failed; ``report``: this rank prints the line."""

    def __init__(self, message: str, exit_code: int, report: bool, details: str = ""):
        super().__init__(message)
        self.exit_code = exit_code
        self.report = report
        self.details = details


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def restart_count() -> int:
    """How many times torchrun restarted this group (0: first attempt)."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        return 0


def _max_restarts() -> int:
    try:
        return int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0"))
    except ValueError:
        return 0


def init_distributed(
    device_spec: str = "auto", timeout_s: float | None = None
) -> tuple[DistInfo, torch.device]:
    """Initialise the process group when launched by torchrun; pick this rank's device."""
    if not launched_by_torchrun():
        return DistInfo(), select_device(device_spec)
    info = DistInfo(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )
    device = select_device(device_spec)
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {}
        if timeout_s is not None:
            if timeout_s <= 0:
                raise PosenfsError(f"train.dist_timeout_s must be > 0, got {timeout_s}")
            kwargs["timeout"] = datetime.timedelta(seconds=float(timeout_s))
        store = _attempt_namespace(kwargs.get("timeout", dist.default_pg_timeout))
        if store is not None:
            kwargs.update(store=store, rank=info.rank, world_size=info.world_size)
        dist.init_process_group(backend=backend, **kwargs)
        _state["ran"] = True
    return info, device


def _attempt_namespace(timeout: datetime.timedelta) -> Any | None:
    """A key namespace of the launcher's store for this attempt only (None: not under torchrun).

    torch's env:// rendezvous uses the launcher's store without any per-attempt prefix, on the
    assumption that every restart gets a new store. The static rendezvous (``torchrun
    --master_addr/--master_port``) keeps one store for the whole job, so a restarted group
    could read the killed attempt's gloo addresses (``connectFullMesh``: connection refused)
    and its error posts. Prefixing the keys with the restart count keeps attempts apart on
    every rendezvous backend.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() != "true":
        return None
    job = dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False, timeout=timeout
    )
    _state["job_store"] = job
    return dist.PrefixStore(f"posenfs/attempt_{restart_count()}", job)


def cleanup() -> None:
    """Destroy the process group (idempotent: a no-op once destroyed)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# --- the job's key-value store ----------------------------------------------------------
def _attempt_store() -> Any:
    """The store of this attempt (its keys are prefixed with the restart count)."""
    return dist.distributed_c10d._get_default_store()


def _job_store() -> Any | None:
    """The launcher's store without the per-attempt prefix: it outlives restarts."""
    return _state.get("job_store")


def shared_run_dir(info: DistInfo, create: Any, key: str) -> tuple[str, bool]:
    """The run folder every rank uses, and whether it is one an earlier attempt started.

    Rank 0 calls ``create()`` on the first attempt and records the folder in the launcher's
    store; after an elastic restart it reuses the recorded folder instead of making a new one.
    """
    folder, again = None, False
    if info.is_main:
        store = _job_store()
        name = f"{_RUN_DIR_KEY}/{key}"
        if store is not None and restart_count() > 0 and store.check([name]):
            folder, again = store.get(name).decode(), True
        else:
            folder = str(create())
            if store is not None:
                store.set(name, folder)
    folder, again = broadcast_object((folder, again))
    return folder, again


# --- failures ---------------------------------------------------------------------------
def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, RankFailed):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, USER_ERRORS):
        return 2
    return 1


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, USER_ERRORS):
        return user_message(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _read_posts(store: Any, world: int, skip: int) -> list[dict[str, Any]]:
    keys = [f"{_ERROR_KEY}/{r}" for r in range(world) if r != skip]
    found = [k for k in keys if store.check([k])]
    return [json.loads(store.get(k).decode()) for k in found]


def _peer_failure(store: Any, info: DistInfo, wait_s: float) -> dict[str, Any] | None:
    """The error another rank posted (waiting briefly: a broken collective may arrive first)."""
    deadline = time.monotonic() + wait_s
    while True:
        with contextlib.suppress(Exception):
            posts = _read_posts(store, info.world_size, info.rank)
            if posts:
                return min(posts, key=lambda p: p["rank"])
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def _post_failure(store: Any, info: DistInfo, exc: BaseException) -> None:
    post = {
        "rank": info.rank,
        "message": _one_line(exc),
        "code": _exit_code(exc),
        "details": "".join(traceback.format_exception(exc)),
    }
    with contextlib.suppress(Exception):
        store.set(f"{_ERROR_KEY}/{info.rank}", json.dumps(post))


def _is_collective_error(exc: BaseException) -> bool:
    if isinstance(exc, dist.DistError | _Terminated):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        k in text for k in ("gloo", "Gloo", "NCCL", "Connection closed", "Timed out", "timed out")
    )


def _failure(exc: BaseException, info: DistInfo, store: Any) -> RankFailed:
    """What this rank reports when the run fails (``exc``: what it saw)."""
    if _is_collective_error(exc):  # most likely a consequence: look for the cause elsewhere
        peer = _peer_failure(store, info, _PEER_GRACE_S)
        if peer is not None:
            return RankFailed(
                f"rank {peer['rank']}: {peer['message']}",
                int(peer["code"]),
                report=info.is_main,
                details=peer.get("details", ""),
            )
        if isinstance(exc, _Terminated):
            left = _max_restarts() - restart_count()
            what = (
                f"torchrun restarts the group ({left} restart(s) left)"
                if left > 0
                else "stopped by the launcher"
            )
            return RankFailed(f"rank {info.rank}: a worker was lost; {what}", 143, info.is_main)
    _post_failure(store, info, exc)
    return RankFailed(
        f"rank {info.rank}: {_one_line(exc)}",
        _exit_code(exc),
        report=info.is_main,
        details="".join(traceback.format_exception(exc)),
    )


class _Terminated(Exception):
    """SIGTERM from the launcher (it stops the other workers when one fails)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated("terminated")


def _all_left_barrier(store: Any, info: DistInfo, timeout_s: float) -> None:
    """Wait (through the store, not the group's sockets) until every rank is out of the barrier.

    A rank that returns from a gloo collective and exits at once can close its sockets while a
    peer is still finishing the same collective; the peer then fails with "Connection closed by
    peer". Counting ranks in the store first means nobody exits while a peer still needs it.
    """
    key = "posenfs/left_final_barrier"
    store.add(key, 1)
    deadline = time.monotonic() + timeout_s
    while store.add(key, 0) < info.world_size:
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for the other ranks")
        time.sleep(0.01)


@contextlib.contextmanager
def session(
    device_spec: str = "auto", timeout_s: float | None = None
) -> Iterator[tuple[DistInfo, torch.device]]:
    """Run the body in a process group (when launched by torchrun) with a clean ending.

    Raises ``RankFailed`` on every rank when any rank failed (``report`` is set on rank 0 only).
    """
    info, device = init_distributed(device_spec, timeout_s)
    if not info.enabled:
        yield info, device
        return
    store = _attempt_store()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        try:
            yield info, device
            dist.barrier()  # the last collective: every rank finished its part
            _all_left_barrier(store, info, timeout_s or 300.0)
        except BaseException as exc:  # noqa: BLE001 - every way out is reported the same way
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the launcher's stop: report first
            raise _failure(exc, info, store) from None
    finally:
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, previous)
        cleanup()


def end_process(code: int | str | None, exc: BaseException | None = None) -> None:
    """After a distributed run: flush, stop data workers, and end without finalization.

    See the module docstring: the group's native threads cannot be joined from Python, so a
    worker that ran a process group leaves by ``os._exit`` once its results are written and
    the group is destroyed. A no-op in a process that never joined a group.
    """
    if not _state["ran"]:
        return
    if exc is not None:
        traceback.print_exception(exc)
    if not isinstance(code, int):
        code = 0 if code is None else 1
    cleanup()
    for child in multiprocessing.active_children():  # e.g. DataLoader workers
        child.terminate()
        child.join(timeout=5)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def fault_point(info: DistInfo, epoch: int, step: int) -> None:
    """Test-only fault injection: ``POSENFS_TEST_FAULT=KIND:RANK:EPOCH:STEP``.

    KIND is ``raise`` (RuntimeError), ``usererror`` (PosenfsError) or ``kill`` (SIGKILL to
    this process); EPOCH and STEP are 1-based. Fires on the first attempt only, so a run under
    ``torchrun --max-restarts`` recovers. Not for users: tests use it to break one rank.
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec or restart_count() > 0:
        return
    try:
        kind, rank, at_epoch, at_step = spec.split(":")
        hit = (int(rank), int(at_epoch), int(at_step)) == (info.rank, epoch, step)
    except ValueError:
        return
    if not hit:
        return
    where = f"rank {info.rank}, epoch {epoch}, step {step}"
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "usererror":
        raise PosenfsError(f"injected user error at {where}")
    raise RuntimeError(f"injected fault at {where}")


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= dist.get_world_size()
    return value


def all_reduce_grads(params: Sequence[torch.Tensor]) -> None:
    """Average gradients computed outside DDP's reducer (the architecture steps)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    world = dist.get_world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world


def gather_objects(obj: Any) -> list[Any]:
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Give every rank rank 0's BatchNorm statistics (DDP syncs them only before forwards)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    for buf in module.buffers():
        dist.broadcast(buf, src=src)
