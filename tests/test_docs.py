"""The docs must match the code: generated pages are current, runnable examples run, the site builds,
every Trainer flag is documented, and the tests and files the pages name exist.

A code block is runnable when the line before its ```python fence is exactly ``<!-- runnable -->``.
Each one runs as a script in a fresh interpreter, in an empty temporary directory.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from engineering import Trainer
from tools.event_catalog import render

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RUNNABLE = "<!-- runnable -->"
BLOCK_TIMEOUT_S = 120


def test_event_catalog_page_matches_the_code():
    page = (DOCS / "events.md").read_text()
    assert page == render(), "docs/events.md is stale: run `python tools/event_catalog.py > docs/events.md`"


# -------------------------------------------------------------------------------------------------
# Runnable examples
# -------------------------------------------------------------------------------------------------
def runnable_blocks() -> list[tuple[str, int, str]]:
    """(page, line of the fence, code) for every block marked runnable, in every page."""
    blocks = []
    for page in sorted(DOCS.glob("*.md")):
        lines = page.read_text().splitlines()
        for index, line in enumerate(lines):
            if line.strip() != RUNNABLE:
                continue
            fence = index + 1
            if fence >= len(lines) or lines[fence].strip() != "```python":
                raise AssertionError(f"{page.name}:{index + 1}: {RUNNABLE} must sit right above a ```python fence")
            end = next((i for i in range(fence + 1, len(lines)) if lines[i].strip() == "```"), None)
            if end is None:
                raise AssertionError(f"{page.name}:{fence + 1}: the runnable block is never closed")
            blocks.append((page.name, fence + 1, "\n".join(lines[fence + 1:end]) + "\n"))
    return blocks


BLOCKS = runnable_blocks()


def _run_block(code: str, directory: Path) -> subprocess.CompletedProcess:
    script = directory / "block.py"
    script.write_text(code)
    environment = {key: value for key, value in os.environ.items() if key != "TRIBUS_CALLBACKS"}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, str(script)], cwd=directory, env=environment, capture_output=True,
                          text=True, timeout=BLOCK_TIMEOUT_S)


@pytest.fixture(scope="module")
def block_runs(request, tmp_path_factory):
    """Start the selected blocks at once, a few at a time: each pays for importing torch in a fresh interpreter."""
    selected = {(item.callspec.params["page"], item.callspec.params["line"]) for item in request.session.items
                if getattr(item, "originalname", None) == "test_a_runnable_example_runs"}
    runs: dict[tuple[str, int], Future] = {}
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for page, line, code in BLOCKS:
            if (page, line) in selected:
                directory = tmp_path_factory.mktemp(f"{page.removesuffix('.md')}-{line}")
                runs[(page, line)] = pool.submit(_run_block, code, directory)
        yield runs


# Every pytest-xdist worker collects every test, so each would start every block: the group keeps the examples on
# one worker (`make test` runs with --dist loadgroup), which runs each block once.
@pytest.mark.xdist_group("runnable_examples")
@pytest.mark.parametrize(("page", "line"), [(page, line) for page, line, _ in BLOCKS],
                         ids=[f"{page}:{line}" for page, line, _ in BLOCKS])
def test_a_runnable_example_runs(block_runs, page, line):
    result = block_runs[(page, line)].result()
    assert result.returncode == 0, (
        f"docs/{page}, the block at line {line}, exited with {result.returncode}:\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    )


def test_the_pages_have_runnable_examples():
    pages = {page for page, _, _ in BLOCKS}
    assert {"index.md", "research.md", "engineering.md", "auxiliary.md"} <= pages, pages


def readme_example() -> str:
    """The first ```python block under the README's "## Example" heading."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Example\n", 1)[1]
    return section.split("```python\n", 1)[1].split("\n```", 1)[0] + "\n"


def test_the_readme_example_runs_as_pasted(tmp_path):
    result = _run_block(readme_example(), tmp_path)
    assert result.returncode == 0, f"README.md's example exited with {result.returncode}:\n{result.stderr[-6000:]}"
    lines = result.stdout.splitlines()
    assert "val_loss=" in lines[-2]  # it trained and validated: the epoch's last progress line
    assert lines[-1] == "`Trainer.fit` stopped: `max_epochs=1` reached."
    assert (tmp_path / "lightning_logs" / "version_0").is_dir()


# -------------------------------------------------------------------------------------------------
# The site
# -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built once with ``--strict``: any warning (a broken link, a docstring mkdocstrings cannot
    read, a name it cannot find) fails the build."""
    missing = [name for name in ("mkdocs", "mkdocstrings_handlers.python", "pymdownx")
               if importlib.util.find_spec(name.split(".")[0]) is None]
    if missing:
        pytest.skip(f"{missing} not installed: pip install -e '.[test]' -c constraints.txt")
    directory = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(directory)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return directory


def test_the_site_builds_strictly(site):
    assert (site / "index.html").is_file()


@pytest.mark.parametrize("package", ["research", "engineering", "auxiliary"])
def test_the_api_reference_documents_every_public_name(site, package):
    page = (site / "api.html").read_text()
    names = importlib.import_module(package).__all__
    missing = [name for name in names if f'id="{package}.{name}"' not in page]
    assert not missing, f"docs/api.md lacks an entry for {[f'{package}.{name}' for name in missing]}: add `::: {package}.NAME`"


def test_the_pages_load_nothing_from_the_network(site):
    """Highlighting, fonts and search come with the site, so pages read offline look as they do online."""
    remote = re.compile(r"<(?:script|link|img)\b[^>]*\b(?:src|href)=\"(?:https?:)?//", re.I)
    loading = sorted(page.name for page in site.glob("*.html") if remote.search(page.read_text()))
    assert not loading, f"these pages load scripts, styles or images from the network: {loading}"
    assert 'class="highlight"' in (site / "index.html").read_text()  # code coloured at build time, by Pygments


def test_search_works_from_disk_too(site):
    """From file:// the browser refuses the search's worker and JSON request; the index ships as a script."""
    script = (site / "search" / "search_index.js").read_text()
    assert script.startswith("window.tribusSearchIndex = ")
    index = json.loads(script.removeprefix("window.tribusSearchIndex = ").rstrip().removesuffix(";"))
    assert index == json.loads((site / "search" / "search_index.json").read_text())
    assert 'src="js/offline-search.js"' in (site / "index.html").read_text()


# -------------------------------------------------------------------------------------------------
# Trainer flags
# -------------------------------------------------------------------------------------------------
def documented_flags() -> set[str]:
    """The flags named in the first column of the tables under engineering.md's "Trainer flags" heading."""
    page = (DOCS / "engineering.md").read_text()
    section = re.search(r"^## Trainer flags\n(.*?)(?=^## )", page, flags=re.S | re.M)
    assert section, "docs/engineering.md has no '## Trainer flags' section"
    return set(re.findall(r"^\| `(\w+)` \|", section.group(1), flags=re.M))


def test_every_trainer_flag_is_documented():
    flags = [name for name in inspect.signature(Trainer.__init__).parameters if name != "self"]
    missing = [name for name in flags if name not in documented_flags()]
    assert not missing, f"docs/engineering.md's flag reference lacks {missing}"
    unknown = documented_flags() - set(flags)
    assert not unknown, f"docs/engineering.md documents flags the Trainer does not have: {sorted(unknown)}"


# -------------------------------------------------------------------------------------------------
# The migration guide's evidence
# -------------------------------------------------------------------------------------------------
NODE_ID = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def cited_tests() -> list[tuple[str, str]]:
    """(file, function) of every ``tests/....py::test_name`` the migration guide names."""
    page = DOCS / "migrating-from-lightning.md"
    return NODE_ID.findall(page.read_text()) if page.is_file() else []


def test_the_migration_guide_cites_tests():
    assert len(cited_tests()) >= 10


CITED = sorted(set(cited_tests()))


@pytest.mark.parametrize(("path", "name"), CITED, ids=[f"{p}::{n}" for p, n in CITED])
def test_every_cited_test_exists(path, name):
    file = ROOT / path
    assert file.is_file(), f"{path} does not exist"
    # Module level only: a LightningModule's `test_step` in a test file is not a test.
    functions = {node.name for node in ast.parse(file.read_text()).body
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assert name.startswith("test_") and name in functions, f"{path} has no test function {name}"


# A path into the repository, e.g. `engineering/loop/fit.py` or tests/e2e/test_ddp.py.
REPO_FILE = re.compile(r"(?<![\w/.])((?:research|engineering|auxiliary|tools|examples|bench|tests)/[\w/.-]*\w\.py)\b")


def test_every_source_file_the_pages_name_exists():
    named = {(page.name, path) for page in DOCS.glob("*.md") for path in REPO_FILE.findall(page.read_text())}
    missing = sorted(f"docs/{page} names {path}" for page, path in named if not (ROOT / path).is_file())
    assert not missing, "\n".join(missing)


# -------------------------------------------------------------------------------------------------
# Pseudocode quoted from docstrings
# -------------------------------------------------------------------------------------------------
QUOTED = re.compile(r"[Ff]rom `(engineering\.[\w.]+)`[^\n]*\n\n```text\n(.*?)```", re.S)


def quoted_pseudocode() -> list[tuple[str, str, str]]:
    """(page, dotted name, block) for every ```text block introduced by "From `engineering.x.y`"."""
    return [(page.name, name, block) for page in sorted(DOCS.glob("*.md"))
            for name, block in QUOTED.findall(page.read_text())]


QUOTES = quoted_pseudocode()


def test_the_pages_quote_the_loop_pseudocode():
    assert {"engineering.loop.fit.run_fit", "engineering.loop.fit.TrainingStep"} <= {name for _, name, _ in QUOTES}


@pytest.mark.parametrize(("page", "name", "block"), QUOTES, ids=[f"{p}:{n}" for p, n, _ in QUOTES])
def test_quoted_pseudocode_matches_its_docstring(page, name, block):
    module_name, _, attribute = name.rpartition(".")
    docstring = inspect.getdoc(getattr(importlib.import_module(module_name), attribute)) or ""
    normalized = [line.strip() for line in docstring.splitlines()]
    quoted = [line.strip() for line in block.strip().splitlines()]
    assert any(normalized[i:i + len(quoted)] == quoted for i in range(len(normalized))), (
        f"{page} quotes {name}'s pseudocode, which has changed: copy its docstring again"
    )
