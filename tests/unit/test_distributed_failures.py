"""How a failed distributed run is reported, without launching processes (a dict as store)."""

from __future__ import annotations

import pytest

from posenfs_cli.engine import distributed as d
from posenfs_cli.errors import PosenfsError


class DictStore:
    def __init__(self):
        self.data: dict[str, bytes] = {}

    def set(self, key, value):
        self.data[key] = value.encode() if isinstance(value, str) else value

    def get(self, key):
        return self.data[key]

    def check(self, keys):
        return all(k in self.data for k in keys)

    def add(self, key, n):
        value = int(self.data.get(key, b"0")) + n
        self.data[key] = str(value).encode()
        return value


R0, R1 = d.DistInfo(0, 2, 0), d.DistInfo(1, 2, 1)


def test_own_user_error_is_posted_and_reported_by_rank0_only(monkeypatch):
    store = DictStore()
    failed = d._failure(PosenfsError("bad recipe key"), R1, store)
    assert (str(failed), failed.exit_code, failed.report) == ("rank 1: bad recipe key", 2, False)
    # rank 0 sees its collective break and finds rank 1's post
    monkeypatch.setattr(d, "_PEER_GRACE_S", 0.0)
    seen = d._failure(RuntimeError("[gloo/pair.cc] Connection closed by peer"), R0, store)
    assert (str(seen), seen.exit_code, seen.report) == ("rank 1: bad recipe key", 2, True)


def test_bug_keeps_exit_code_1_and_the_traceback_as_details():
    store = DictStore()
    failed = d._failure(ValueError("boom"), R0, store)
    assert (str(failed), failed.exit_code, failed.report) == ("rank 0: ValueError: boom", 1, True)
    assert "ValueError: boom" in failed.details


def test_broken_collective_without_a_post_is_this_ranks_own_error(monkeypatch):
    monkeypatch.setattr(d, "_PEER_GRACE_S", 0.0)
    failed = d._failure(RuntimeError("Gloo timed out"), R1, DictStore())
    assert str(failed) == "rank 1: RuntimeError: Gloo timed out"
    assert failed.exit_code == 1


def test_launcher_stop_mentions_the_restart(monkeypatch):
    monkeypatch.setattr(d, "_PEER_GRACE_S", 0.0)
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "2")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    failed = d._failure(d._Terminated("terminated"), R0, DictStore())
    assert "torchrun restarts the group (2 restart(s) left)" in str(failed)


def test_fault_point_fires_once_at_its_step_on_the_first_attempt(monkeypatch):
    monkeypatch.setenv(d.FAULT_ENV, "raise:1:2:3")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    d.fault_point(R0, 2, 3)  # other rank
    d.fault_point(R1, 2, 2)  # other step
    with pytest.raises(RuntimeError, match="injected fault at rank 1, epoch 2, step 3"):
        d.fault_point(R1, 2, 3)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    d.fault_point(R1, 2, 3)  # a restarted attempt runs clean
    monkeypatch.setenv(d.FAULT_ENV, "usererror:0:1:1")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    with pytest.raises(PosenfsError):
        d.fault_point(R0, 1, 1)


def test_end_process_is_a_no_op_without_a_process_group():
    d.end_process(0)  # returns: this process never joined a group


def test_non_positive_timeout_is_a_user_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(PosenfsError, match="dist_timeout_s"):
        d.init_distributed("cpu", 0)


def test_nobody_leaves_before_every_rank_is_out_of_the_final_barrier():
    store = DictStore()
    with pytest.raises(RuntimeError, match="waiting for the other ranks"):
        d._all_left_barrier(store, R0, timeout_s=0.05)  # rank 1 never arrived
    d._all_left_barrier(store, R1, timeout_s=0.05)  # rank 0 already counted itself
