#!/usr/bin/env python3
"""`python tools/validate_ppo_telemetry.py LOG ...`: a thin entry point into `townlet telemetry validate`
(same arguments)."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    app(["telemetry", "validate", *sys.argv[1:]], prog_name="validate_ppo_telemetry.py")
