"""docs/OPS_HANDBOOK.md names every command the bus registers, with its role."""

from __future__ import annotations

from conftest import REPO_ROOT
from townlet.ops import commands  # noqa: F401 - registers the commands
from townlet.ops.registry import REGISTRY


def test_the_handbook_lists_every_command_with_its_role() -> None:
    text = (REPO_ROOT / "docs/OPS_HANDBOOK.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| `")}
    missing = []
    for name, cmd in sorted(REGISTRY.items()):
        row = next((line for key, line in rows.items() if f"`{name}`" in key), None)
        if row is None or (not cmd.reserved and f"| {cmd.role} |" not in row):
            missing.append(f"{name} ({cmd.role})")
    assert not missing, f"docs/OPS_HANDBOOK.md lacks or mislabels: {', '.join(missing)}"
