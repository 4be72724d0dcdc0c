#!/usr/bin/env python3
"""`python tools/capture_rollout_suite.py ...`: a thin entry point into `townlet capture suite` (same arguments)."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    app(["capture", "suite", *sys.argv[1:]], prog_name="capture_rollout_suite.py")
