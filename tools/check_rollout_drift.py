#!/usr/bin/env python3
"""`python tools/check_rollout_drift.py ...`: a thin entry point into `townlet capture drift` (same arguments)."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    app(["capture", "drift", *sys.argv[1:]], prog_name="check_rollout_drift.py")
