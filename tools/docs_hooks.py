"""MkDocs hooks (mkdocs.yml `hooks:`): what the built site needs to work opened from disk, without a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def on_post_build(config: Any, **_: Any) -> None:
    """Write the search index again as a script: a page opened from ``file://`` may load scripts, but the
    browser refuses it the Web Worker and the JSON request that the built-in search uses."""
    search = Path(config["site_dir"]) / "search"
    index = search / "search_index.json"
    if index.is_file():
        data = json.loads(index.read_text(encoding="utf-8"))
        (search / "search_index.js").write_text(f"window.tribusSearchIndex = {json.dumps(data)};\n", encoding="utf-8")
