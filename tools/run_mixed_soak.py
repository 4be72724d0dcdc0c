#!/usr/bin/env python3
"""`python tools/run_mixed_soak.py CONFIG --cycles N ...`: a thin entry point into `townlet soak` (same arguments)."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    app(["soak", *sys.argv[1:]], prog_name="run_mixed_soak.py")
