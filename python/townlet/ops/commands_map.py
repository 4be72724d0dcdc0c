"""`town_map`: the town's static layout (grid shape, walls, objects with their types and positions), which the
telemetry snapshot leaves out because it never changes while a shard runs. Observers read it once."""

from __future__ import annotations

from typing import Any

from townlet.ops.registry import NoArgs, command
from townlet.ops.world import ShardWorld


@command(
    "town_map",
    "viewer",
    NoArgs,
    "the static town: grid shape, walls (one string per row, '#' a wall), objects with type and position",
    mutates=False,
)
def _town_map(w: ShardWorld, a: NoArgs) -> dict[str, Any]:
    return town_map(w)


def town_map(w: ShardWorld) -> dict[str, Any]:
    town = w.town
    walls = town.walls()
    height, width = (int(n) for n in walls.shape)
    positions = town.object_positions()
    return {
        "config_id": w.config.config_id,
        "width": width,
        "height": height,
        "grid_shape": [int(n) for n in town.grid_shape],
        "walls": ["".join("#" if cell else "." for cell in row) for row in walls],
        "objects": [
            {"id": oid, "type": otype, "position": [int(positions[o][0]), int(positions[o][1])]}
            for o, (oid, otype) in enumerate(zip(town.object_ids(), town.object_types(), strict=True))
        ],
    }
