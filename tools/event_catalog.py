"""Render docs/events.md from engineering/events.py, so the docs cannot drift from the code.

    python tools/event_catalog.py > docs/events.md
"""

from __future__ import annotations

import inspect

from engineering import events


def render() -> str:
    rows = []
    for name, event in events.bus.items():
        payload = ", ".join(("pl_module",) + event.payload)
        rows.append(f"| `{name}` | {event.__doc__} | `{payload}` |")
    return "\n".join([
        "# Events",
        "",
        "Generated from `engineering/events.py` by `python tools/event_catalog.py > docs/events.md`;",
        "a test fails when this page and the code differ.",
        "",
        "## When each event fires",
        "",
        "```text",
        inspect.getdoc(events).split("\n\n", 1)[1].split("\n\nEvery signal", 1)[0],
        "```",
        "",
        "## Catalog",
        "",
        "Every event is sent by the Trainer as `event.send(trainer, pl_module=..., **payload)`.",
        "",
        "| event | when | keyword arguments after the sender |",
        "|---|---|---|",
        *rows,
        "",
    ])


if __name__ == "__main__":
    print(render(), end="")
