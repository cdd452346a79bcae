"""``python -m engineering.cli``: the same as the ``tribus`` console script."""

from engineering.cli import main

main()
