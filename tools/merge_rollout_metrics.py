#!/usr/bin/env python3
"""`python tools/merge_rollout_metrics.py ...`: a thin entry point into `townlet capture merge` (same arguments)."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    app(["capture", "merge", *sys.argv[1:]], prog_name="merge_rollout_metrics.py")
