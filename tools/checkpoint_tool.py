#!/usr/bin/env python3
"""`python tools/checkpoint_tool.py COMMAND ...`: a thin entry point into `townlet checkpoint` (same arguments)."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    app(["checkpoint", *sys.argv[1:]], prog_name="checkpoint_tool.py")
