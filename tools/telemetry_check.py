#!/usr/bin/env python3
"""Validate telemetry_snapshot payloads against the published schema:
`python tools/telemetry_check.py PAYLOAD.json [--json] [--write-schema PATH]` (`townlet telemetry-check`)."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    app(["telemetry-check", *sys.argv[1:]], prog_name="telemetry_check.py")
