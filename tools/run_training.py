#!/usr/bin/env python3
"""`python tools/run_training.py CONFIG --mode replay|rollout|mixed ...`: a thin entry point into
`townlet train` (same arguments)."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    app(["train", *sys.argv[1:]], prog_name="run_training.py")
