"""spawn's `home_position` and `profile` (the prior system's fields, #14): a slot's home and personality are fixed by
the config, so spawn accepts the slot's own values (echoed in the result) and refuses any other with one line naming
the slot's, rather than ignoring them."""

from __future__ import annotations

from pathlib import Path

from test_ops_bus import err, make_shard
from test_ops_world import Admin


def test_spawn_checks_home_position_and_profile_against_the_slot(tmp_path: Path) -> None:
    shard = make_shard(tmp_path)
    admin = Admin(shard)
    admin.ok("kill", "bob")
    shard.step()
    r = admin("spawn", "bob", [3, 3], home_position=[9, 9])
    assert err(r).code == "invalid_args"
    assert err(r).message == (
        "spawn: bob's home is [5, 3] (homes are per slot, set in the config's agents); home_position [9, 9] cannot "
        "be given"
    )
    r = admin("spawn", "bob", [3, 3], profile="stoic")
    assert err(r).code == "invalid_args" and "bob's profile is 'socialite'" in err(r).message
    assert not shard.snapshot()["agents"]["bob"]["alive"]  # a refused spawn changes nothing
    got = admin.ok("spawn", "bob", [3, 3], home_position=[5, 3], profile="socialite")
    assert got == {"agent_id": "bob#2", "position": [3, 3], "home_position": [5, 3], "profile": "socialite"}
    admin.ok("kill", "alice")
    shard.step()
    # alice has no override: the default town's distribution has one profile, so hers is known too.
    assert admin.ok("spawn", "alice", [3, 3], profile="balanced")["profile"] == "balanced"
    shard.close()
