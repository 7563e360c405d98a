"""`python -m affectline.training ...`: the same command as `affectline train`."""

from __future__ import annotations

import argparse
import sys

from affectline.training.cli import DESCRIPTION, EPILOG, add_arguments, run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m affectline.training", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
