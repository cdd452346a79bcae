"""Port a Lightning program to tribus the way the migration guide says: by changing its imports, nothing else.

``port(source)`` rewrites every ``from lightning.pytorch[...] import A, B`` (or ``pytorch_lightning``) line into
imports of the same names from their tribus homes, and refuses a name it has no home for.
"""

from __future__ import annotations

import re

# Each Lightning name a compat program imports, and the tribus package that holds it (docs/migrating-from-lightning.md).
HOMES = {
    "LightningModule": "research",
    "LightningDataModule": "research",
    "AttributeDict": "research",
    "CombinedLoader": "engineering.utilities",
    "Trainer": "engineering",
    "Callback": "engineering",
    "seed_everything": "engineering",
    "ModelCheckpoint": "engineering",
    "OnExceptionCheckpoint": "engineering",
    "EarlyStopping": "auxiliary",
    "LearningRateMonitor": "auxiliary",
    "ModelSummary": "auxiliary",
    "TQDMProgressBar": "auxiliary",
    "CSVLogger": "auxiliary",
    "TensorBoardLogger": "auxiliary",
}
_LIGHTNING_IMPORT = re.compile(r"^from (?:lightning\.pytorch|pytorch_lightning)(?:\.[\w.]+)? import ([^\n(]+)$", re.M)


def port(source: str) -> str:
    """``source`` with its Lightning imports swapped for tribus's."""
    def swap(match: re.Match[str]) -> str:
        names = [name.strip() for name in match.group(1).split(",")]
        missing = [name for name in names if name not in HOMES]
        if missing:
            raise KeyError(f"no tribus home known for {missing}")
        by_home: dict[str, list[str]] = {}
        for name in names:
            by_home.setdefault(HOMES[name], []).append(name)
        return "\n".join(f"from {home} import {', '.join(sorted(found))}" for home, found in sorted(by_home.items()))

    return _LIGHTNING_IMPORT.sub(swap, source)
