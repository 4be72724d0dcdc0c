#!/usr/bin/env python3
"""`python tools/telemetry_summary.py LOG ...`: a thin entry point into `townlet telemetry summary` (same arguments)."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    app(["telemetry", "summary", *sys.argv[1:]], prog_name="telemetry_summary.py")
