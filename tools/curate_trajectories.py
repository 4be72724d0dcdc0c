#!/usr/bin/env python3
"""`python tools/curate_trajectories.py ...`: a thin entry point into `townlet data curate` (same arguments)."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    app(["data", "curate", *sys.argv[1:]], prog_name="curate_trajectories.py")
