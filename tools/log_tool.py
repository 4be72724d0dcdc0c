#!/usr/bin/env python3
"""`python tools/log_tool.py COMMAND ...`: a thin entry point into `townlet log` (same arguments)."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    app(["log", *sys.argv[1:]], prog_name="log_tool.py")
