"""`TownEnv(..., fixed_slots=True)`: one tick under the "black death" convention. Every slot answers under its
original name for the whole episode; a slot whose agent fainted or was evicted reads dead (zero observation,
wait-only mask, reward 0) from that tick until its successor respawns under the same name (the agent's real last
observation is in that tick's `infos[agent]["final_observation"]`); only the episode's end ends an agent."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from townlet.sim.env import TownEnv

#: What `ParallelEnv.step` returns: observations, rewards, terminations, truncations, infos (per agent).
Step = tuple[
    dict[str, dict[str, Any]],
    dict[str, float],
    dict[str, bool],
    dict[str, bool],
    dict[str, dict[str, Any]],
]


def step_fixed(env: TownEnv, actions: dict[str, int]) -> Step:
    """One tick of `env` with fixed slots (`env.agents` is `env.possible_agents` until the episode ends)."""
    names = env.possible_agents
    batch = env._batch(actions, set(names), {a: i for i, a in enumerate(names)})
    episode = env._vec.native.episode(0)
    obs, rewards, terminated, truncated, info = env._vec.step(batch)
    over = env._vec.native.episode(0) != episode
    masks, final, final_masks = env._vec.action_masks(), info["final_observation"], info["final_action_mask"]
    alive = info["alive"]
    lineage = env._vec.agent_ids(0)
    dead_mask = np.zeros(env._vec.n_actions, np.int8)
    dead_mask[0] = 1
    out_obs: dict[str, dict[str, Any]] = {}
    out_rew: dict[str, float] = {}
    out_term: dict[str, bool] = {}
    out_trunc: dict[str, bool] = {}
    out_info: dict[str, dict[str, Any]] = {}
    for i, agent in enumerate(names):
        if over and truncated[i]:  # the ending episode's last observation and mask
            out_obs[agent] = env._agent_obs(final[i], final_masks[i])
        elif not over and alive[i]:
            out_obs[agent] = env._agent_obs(obs[i], masks[i])
        else:  # an empty slot (or one that was empty when the day ended)
            out_obs[agent] = {
                "observation": np.zeros(env._vec.obs_dim, np.float32),
                "action_mask": dead_mask.copy(),
            }
        out_rew[agent] = float(rewards[i])
        out_term[agent] = False
        out_trunc[agent] = over
        out_info[agent] = {
            "slot": i,
            "alive": bool(truncated[i]) if over else bool(alive[i]),
            "down": bool(terminated[i]),
            "agent_id": lineage[i],
            "invalid_action": bool(info["invalid_action"][i]),
        }
        if terminated[i]:  # the agent's real last observation, as it went down
            out_info[agent]["final_observation"] = final[i].copy()
    env._slots = lineage
    env.agents = [] if over else list(names)
    return out_obs, out_rew, out_term, out_trunc, out_info
