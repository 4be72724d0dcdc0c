#!/usr/bin/env python3
"""Run the simulation headless: `python tools/run_simulation.py [--config C] [--tick-limit N]` (`townlet sim run`),
or serve it live: `... --serve HOST:PORT --tokens FILE [--tick-rate HZ] [--policy CKPT]` (`townlet sim serve`).
Without --config the default town runs."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    argv = sys.argv[1:]
    serving = any(a == "--serve" or a.startswith("--serve=") for a in argv)
    app(["sim", "serve" if serving else "run", *argv], prog_name="run_simulation.py")
