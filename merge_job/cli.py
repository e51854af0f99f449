"""Command line: parse arguments and run. The job itself lives in other modules."""

from __future__ import annotations

import argparse

from merge_job import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="merge-job")
    parser.add_argument("--version", action="version", version=f"merge-job {__version__}")
    parser.parse_args(argv)
    return 0
