"""Check the one-way dependency rule: auxiliary → engineering → research (DESIGN.md §1).

- research imports neither engineering nor auxiliary, anywhere in a file;
- engineering never imports auxiliary at module level (a function-local import is the discovery door's
  business and is also refused, so the only way in is the entry-point group);
- auxiliary uses only engineering's public names: ``engineering`` itself and ``engineering.events``;
- auxiliary reads of the Trainer (``trainer.<name>``) only the names ``engineering/view.py``'s ``TrainerView`` lists.

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


def _trainer_view_names(root: Path) -> set[str]:
    """The names ``TrainerView`` declares, read from its source (no import: the check runs on any tree)."""
    view = root / "engineering" / "view.py"
    if not view.exists():
        return set()
    for node in ast.walk(ast.parse(view.read_text())):
        if isinstance(node, ast.ClassDef) and node.name == "TrainerView":
            return {item.target.id for item in node.body
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)}
    return set()


def _trainer_reads(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "trainer":
            yield node.lineno, node.attr


def violations(root: Path) -> list[str]:
    """Every import in ``root``'s three packages that breaks the dependency rule, and every read of the Trainer
    from auxiliary beyond ``TrainerView``."""
    found = []
    view = _trainer_view_names(root)
    for package in ("research", "engineering", "auxiliary"):
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for line, module in _imports(tree):
                where = f"{path.relative_to(root)}:{line}"
                if _top(module) in _FORBIDDEN.get(package, ()):
                    found.append(f"{where}: {package} must not import {module}")
                elif package == "auxiliary" and _top(module) == "engineering" and module not in _AUXILIARY_MAY_IMPORT:
                    found.append(f"{where}: auxiliary may use only engineering's public names, not {module}")
            if package == "auxiliary" and view:
                for line, name in _trainer_reads(tree):
                    if name not in view:
                        found.append(f"{path.relative_to(root)}:{line}: auxiliary reads trainer.{name}, which "
                                     "TrainerView (engineering/view.py) does not list")
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    problems = violations(root)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
