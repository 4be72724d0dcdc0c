#!/usr/bin/env python3
"""`python tools/promotion_evaluate.py --input anneal_results.json [--format human|json]`: a thin entry point into
`townlet promotion evaluate` (same arguments): PROMOTE exit 0, HOLD 3, FAIL 4."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    app(["promotion", "evaluate", *sys.argv[1:]], prog_name="promotion_evaluate.py")
