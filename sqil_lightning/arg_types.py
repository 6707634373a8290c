"""Value types (argparse ``type=``) shared by the parsers of the subcommands."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """``text`` as an int of at least 1; else argparse's one error line for the argument."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value
