#!/usr/bin/env python3
"""`python tools/archive_tool.py COMMAND ...`: a thin entry point into `townlet archive` (same arguments)."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    app(["archive", *sys.argv[1:]], prog_name="archive_tool.py")
