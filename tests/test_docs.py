"""Docs that are generated from code must match it."""

from __future__ import annotations

from pathlib import Path

from tools.event_catalog import render

ROOT = Path(__file__).resolve().parent.parent


def test_event_catalog_page_matches_the_code():
    page = (ROOT / "docs" / "events.md").read_text()
    assert page == render(), "docs/events.md is stale: run `python tools/event_catalog.py > docs/events.md`"
