#!/usr/bin/env python3
"""Build the site and exports into _site/ (or the folder given): the same pipeline as `evidence build`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from evidence.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["--root", str(Path(__file__).resolve().parent), "build", *sys.argv[1:]]))
