#!/usr/bin/env python3
"""`python tools/capture_rollout.py ...`: a thin entry point into `townlet capture rollout` (same arguments)."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    app(["capture", "rollout", *sys.argv[1:]], prog_name="capture_rollout.py")
