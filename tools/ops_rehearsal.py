#!/usr/bin/env python3
"""`python tools/ops_rehearsal.py [--workdir DIR | --in-place] [--report FILE] [--report-only]`: a thin entry point
into `townlet rehearsal` (same arguments): seed 001's ops rehearsal, each step's verdict, the acceptance report."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    app(["rehearsal", *sys.argv[1:]], prog_name="ops_rehearsal.py")
