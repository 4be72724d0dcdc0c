#!/usr/bin/env python3
"""`python tools/telemetry_watch.py LOG ...`: a thin entry point into `townlet telemetry watch` (same arguments)."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    app(["telemetry", "watch", *sys.argv[1:]], prog_name="telemetry_watch.py")
