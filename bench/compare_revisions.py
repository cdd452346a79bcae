"""W1's overhead for several commits in one interleaved run: which version of the code is cheaper, on a machine
whose speed drifts more between runs than the code's overhead differs.

Run:   python bench/compare_revisions.py 53caae8 HEAD [--runs 4] [--rounds 2]

Each revision is checked out into a temporary git worktree (the working tree is left alone). Then, ``--runs``
times, this checkout's bench/overhead.py (tribus contenders only) runs once per revision, in turn, with that
worktree first on ``PYTHONPATH``: a drift of the machine's speed falls on every revision alike, which separate
runs of overhead.py an hour apart cannot promise. Reported per revision and contender: the overhead over the raw
loop, median (min–max) over all its pairs, and the raw loop's median µs/step in the same children. Two names of
one commit (``HEAD`` and its hash) make an A/A run: what the machine's noise alone does to the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from overhead import pair_overheads  # bench/ is on sys.path

HERE = os.path.dirname(os.path.abspath(__file__))
CONTENDERS = ("tribus-bare", "tribus-defaults")


def git(*arguments: str) -> str:
    done = subprocess.run(["git", "-C", HERE, *arguments], check=False, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"git {' '.join(arguments)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def environment_for(worktree: str) -> dict[str, str]:
    """The environment that imports the packages from ``worktree``; refuses if something else would win."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [worktree, os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", "import engineering; print(engineering.__file__)"], env=env,
                          cwd=os.path.dirname(worktree), check=False, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"the packages in {worktree} do not import with this Python:\n{done.stderr}")
    found = done.stdout.strip()
    if not found.startswith(worktree + os.sep):
        sys.exit(f"with {worktree} on PYTHONPATH, engineering still imports from {found}: an import hook of an "
                 "installed tribus comes first. Run this with a Python where tribus is not installed as a package, "
                 "or installed in editable mode from a checkout (make's .venv).")
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revisions", nargs="+", help="commits, as git names them (53caae8, HEAD, main~3)")
    parser.add_argument("--runs", type=int, default=4, help="overhead.py runs per revision, in turn")
    parser.add_argument("--rounds", type=int, default=2, help="overhead.py's --rounds in each run")
    args = parser.parse_args()
    commits = {revision: git("rev-parse", "--short", f"{revision}^{{commit}}") for revision in args.revisions}
    pooled = {(revision, name): ([], []) for revision in commits for name in CONTENDERS}
    with tempfile.TemporaryDirectory() as scratch:
        # Numbered: two names of one commit (an A/A run, which shows the noise alone) get a worktree each.
        worktrees = {revision: os.path.join(scratch, f"{number}-{commit}")
                     for number, (revision, commit) in enumerate(commits.items())}
        try:
            for revision, worktree in worktrees.items():
                git("worktree", "add", "--detach", worktree, commits[revision])
            environments = {revision: environment_for(worktree) for revision, worktree in worktrees.items()}
            for index in range(args.runs):
                for revision, env in environments.items():
                    report_path = f"{worktrees[revision]}-run{index}.json"
                    done = subprocess.run([sys.executable, os.path.join(HERE, "overhead.py"), "--tribus-only",
                                           "--rounds", str(args.rounds), "--json", report_path], env=env,
                                          check=False, capture_output=True, text=True)
                    if done.returncode:
                        sys.exit(f"bench/overhead.py failed on {revision} ({commits[revision]}):\n{done.stderr}")
                    with open(report_path) as source:
                        report = json.load(source)
                    for name in CONTENDERS:
                        runs = [round_[name] for round_ in report["rounds"]]
                        pooled[revision, name][0].extend(pair_overheads(runs))
                        pooled[revision, name][1].extend(us for run in runs for us in run["raw_us"])
                    print(f"run {index + 1}/{args.runs}: {revision} done", file=sys.stderr)
        finally:
            for worktree in worktrees.values():
                if os.path.isdir(worktree):
                    git("worktree", "remove", "--force", worktree)
    print(f"W1 overhead over the raw loop, µs/step: {args.runs} runs per revision, {args.rounds} rounds each, "
          "median (min–max) over all pairs")
    for (revision, name), (overheads, raw) in pooled.items():
        print(f"  {revision:<12} {commits[revision]:<10} {name:<17} {statistics.median(overheads):7.1f} "
              f"({min(overheads):.1f}–{max(overheads):.1f}) over {len(overheads)} pairs; "
              f"raw {statistics.median(raw):.1f} µs/step")


if __name__ == "__main__":
    main()
