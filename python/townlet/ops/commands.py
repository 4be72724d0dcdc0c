"""Registers every command (importing this module fills `registry.REGISTRY`)."""

from __future__ import annotations

from townlet.ops import commands_admin, commands_agents, commands_map, commands_policy, commands_read, commands_world

__all__ = [
    "commands_admin",
    "commands_agents",
    "commands_map",
    "commands_policy",
    "commands_read",
    "commands_world",
]
