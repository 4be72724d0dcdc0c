#!/usr/bin/env python3
"""`python tools/audit_bc_datasets.py ...`: a thin entry point into `townlet data audit` (same arguments)."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    app(["data", "audit", *sys.argv[1:]], prog_name="audit_bc_datasets.py")
