#!/usr/bin/env python3
"""`python tools/config_registry.py COMMAND ...`: a thin entry point into `townlet registry` (same arguments)."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    app(["registry", *sys.argv[1:]], prog_name="config_registry.py")
