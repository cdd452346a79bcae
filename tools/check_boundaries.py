"""Check the one-way dependency rule: auxiliary → engineering → research (DESIGN.md §1).

- research imports neither engineering nor auxiliary, anywhere in a file;
- engineering never imports auxiliary at module level (a function-local import is the discovery door's
  business and is also refused, so the only way in is the entry-point group);
- auxiliary uses only engineering's public names: ``engineering`` itself and ``engineering.events``.

Run ``python tools/check_boundaries.py [ROOT]``; it prints each violation and exits 1 if there is any.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

_FORBIDDEN = {
    "research": ("engineering", "auxiliary"),
    "engineering": ("auxiliary",),
}
_AUXILIARY_MAY_IMPORT = {"engineering", "engineering.events"}


def _imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module", "__import__"
        ) and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            yield node.lineno, node.args[0].value


def _top(module: str) -> str:
    return module.split(".")[0]


def violations(root: Path) -> list[str]:
    """Every import in ``root``'s three packages that breaks the dependency rule."""
    found = []
    for package in ("research", "engineering", "auxiliary"):
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for line, module in _imports(tree):
                where = f"{path.relative_to(root)}:{line}"
                if _top(module) in _FORBIDDEN.get(package, ()):
                    found.append(f"{where}: {package} must not import {module}")
                elif package == "auxiliary" and _top(module) == "engineering" and module not in _AUXILIARY_MAY_IMPORT:
                    found.append(f"{where}: auxiliary may use only engineering's public names, not {module}")
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    problems = violations(root)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
