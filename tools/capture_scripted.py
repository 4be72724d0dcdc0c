#!/usr/bin/env python3
"""`python tools/capture_scripted.py ...`: a thin entry point into `townlet data capture` (same arguments)."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    app(["data", "capture", *sys.argv[1:]], prog_name="capture_scripted.py")
