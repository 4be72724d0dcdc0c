#!/usr/bin/env python3
"""Run the simulation headless: `python tools/run_simulation.py --config C --tick-limit N`.

A thin entry point into `townlet sim run` (same options)."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    app(["sim", "run", *sys.argv[1:]], prog_name="run_simulation.py")
