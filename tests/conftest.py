"""Shared fixtures. After every test no receiver may stay connected to the bus (DESIGN.md §2)."""

from __future__ import annotations

import gc

import pytest

from engineering import accelerators, events


@pytest.fixture(autouse=True)
def bus_is_left_empty():
    yield
    if any(event.receivers for event in events.bus.values()):
        gc.collect()  # only then: receivers held by reference cycles let go; a full collection costs 0.2 s here
    leftovers = {name: len(event.receivers) for name, event in events.bus.items() if event.receivers}
    assert not leftovers, f"receivers still connected after the test: {leftovers}"


@pytest.fixture(autouse=True)
def auto_means_cpu(request, monkeypatch):
    """The suite checks CPU behaviour against references computed on the CPU; on a machine with a GPU,
    accelerator="auto" would pick the GPU instead. Tests marked ``cuda`` see it (tests/e2e/test_cuda.py)."""
    if request.node.get_closest_marker("cuda") is None:
        monkeypatch.setattr(accelerators, "auto_accelerator", lambda: "cpu")


@pytest.fixture(autouse=True)
def run_in_tmp_path(tmp_path, monkeypatch):
    """Trainers default to the working directory for logs: keep them out of the checkout."""
    monkeypatch.chdir(tmp_path)
