"""The criterion benches' built-in town is the default town: the JSON they embed is what the config loader makes of
`configs/examples/poc_hybrid.yaml`, so a change to the YAML cannot leave the Rust benches measuring a stale town."""

from __future__ import annotations

import json

from conftest import DEFAULT_CONFIG, REPO_ROOT
from townlet import load_config

BENCH_TOWN = REPO_ROOT / "rust/townlet-core/benches/data/poc_hybrid.json"


def test_the_bench_town_is_the_default_town() -> None:
    embedded = json.loads(BENCH_TOWN.read_text(encoding="utf-8"))
    assert embedded == json.loads(load_config(DEFAULT_CONFIG).world_json()), (
        f"{BENCH_TOWN} is stale: regenerate it (see rust/townlet-core/benches/common/mod.rs)"
    )
