#!/usr/bin/env python3
"""`python tools/validate_registry.py [--registry FILE]`: a thin entry point into `townlet registry validate`."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    app(["registry", "validate", *sys.argv[1:]], prog_name="validate_registry.py")
