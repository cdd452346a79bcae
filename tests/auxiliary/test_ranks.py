"""The rank a process's launcher gave it, read from the environment."""

from __future__ import annotations

import pytest

from auxiliary.ranks import global_rank, rank_zero_only


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch):
    for variable in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(variable, raising=False)


def test_a_process_started_alone_is_rank_zero():
    assert global_rank() == 0


@pytest.mark.parametrize("variable", ["RANK", "SLURM_PROCID"])
def test_launchers_set_the_rank(monkeypatch, variable):
    monkeypatch.setenv(variable, "3")
    assert global_rank() == 3


def test_rank_zero_only_runs_on_rank_zero_alone(monkeypatch):
    calls = []
    record = rank_zero_only(calls.append)
    record("zero")
    monkeypatch.setenv("RANK", "1")
    record("one")
    assert calls == ["zero"]
