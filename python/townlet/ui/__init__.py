"""Observers of a live town: the terminal observer (`townlet observe`, Textual; `app.py`, drawn by `render.py`
from a `source.py` source: a town run in-process or a shard over HTTP) (docs/dashboard.md)."""

from __future__ import annotations
