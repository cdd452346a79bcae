"""``python -m auxiliary.trace FILE``: summarise an EventTrace file."""

from __future__ import annotations

import argparse
import sys

from auxiliary.trace import read_trace, summarize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m auxiliary.trace",
        description="Summarise an EventTrace file: event counts, time before each event, where training "
                    "stopped, and the last events.",
    )
    parser.add_argument("file", help="a JSON-lines file written by auxiliary.EventTrace")
    parser.add_argument("--last", type=int, default=10, help="how many of the final events to list (default 10)")
    arguments = parser.parse_args(argv)
    try:
        records = read_trace(arguments.file)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    print(summarize(records, last=arguments.last))
    return 0


if __name__ == "__main__":
    sys.exit(main())
