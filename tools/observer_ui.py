#!/usr/bin/env python3
"""The terminal observer: `python tools/observer_ui.py [CONFIG | --url URL] [--refresh 0.5] [--ticks N]
[--focus-agent ID] [--token-file F]` (`townlet observe`; `--help` lists every option). Without CONFIG or --url the
default town runs in-process."""

import sys

from townlet.cli import app

if __name__ == "__main__":
    app(["observe", *sys.argv[1:]], prog_name="observer_ui.py")
