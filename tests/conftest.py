"""Shared fixtures. After every test no receiver may stay connected to the bus (DESIGN.md §2)."""

from __future__ import annotations

import gc

import pytest

from engineering import events


@pytest.fixture(autouse=True)
def bus_is_left_empty():
    yield
    gc.collect()
    leftovers = {name: len(event.receivers) for name, event in events.bus.items() if event.receivers}
    assert not leftovers, f"receivers still connected after the test: {leftovers}"


@pytest.fixture(autouse=True)
def run_in_tmp_path(tmp_path, monkeypatch):
    """Trainers default to the working directory for logs: keep them out of the checkout."""
    monkeypatch.chdir(tmp_path)
