"""The native rollout buffer: GAE against a plain NumPy reference (property-based), zero-copy numpy views,
and input checks."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from townlet._core import RolloutBuffer, gae_rows
from townlet.training.ppo_rows import successors

F32 = np.float32


def reference_gae(
    rewards: npt.NDArray[np.floating],
    values: npt.NDArray[np.floating],
    terminated: npt.NDArray[np.bool_],
    truncated: npt.NDArray[np.bool_],
    valid: npt.NDArray[np.bool_],
    bootstrap: npt.NDArray[np.floating],
    next_values: npt.NDArray[np.floating],
    gamma: float,
    lam: float,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """GAE(gamma, lambda) over (steps, agents) arrays, written from the documented semantics.

    delta_t = r_t + gamma * V_next - v_t; A_t = delta_t + gamma * lambda * A_{t+1}, where
    * terminated_t: no bootstrap and the trace is cut (A_t = r_t - v_t);
    * truncated_t: bootstrap from v(final observation) = bootstrap_t, and the trace is cut;
    * not valid_t: A_t = 0 and return 0; the step before it sees V_next = 0 and A_{t+1} = 0;
    * the last row bootstraps from next_values.
    Returns (advantages, returns = advantages + values, 0 where invalid).
    """
    steps, agents = rewards.shape
    adv = np.zeros((steps, agents))
    ret = np.zeros((steps, agents))
    for j in range(agents):
        next_value = float(next_values[j])
        next_adv = 0.0
        for t in reversed(range(steps)):
            if not valid[t, j]:
                next_value, next_adv = 0.0, 0.0
                continue
            r, v = float(rewards[t, j]), float(values[t, j])
            if terminated[t, j]:
                a = r - v
            elif truncated[t, j]:
                a = r + gamma * float(bootstrap[t, j]) - v
            else:
                a = r + gamma * next_value - v + gamma * lam * next_adv
            adv[t, j] = a
            ret[t, j] = a + v
            next_value, next_adv = v, a
    return adv, ret


def fill(buf: RolloutBuffer, data: dict[str, np.ndarray]) -> None:
    for t in range(data["rewards"].shape[0]):
        buf.add(*(data[name][t] for name in ADD_ORDER))


ADD_ORDER = (
    "obs",
    "masks",
    "actions",
    "log_probs",
    "values",
    "rewards",
    "terminated",
    "truncated",
    "valid",
    "bootstrap",
)


def random_data(
    rng: np.random.Generator, steps: int, agents: int, obs_dim: int, n_actions: int
) -> dict[str, np.ndarray]:
    p_term, p_trunc, p_invalid = rng.uniform(0, 0.4, size=3)
    return {
        "obs": rng.standard_normal((steps, agents, obs_dim)).astype(F32),
        "masks": rng.random((steps, agents, n_actions)) < 0.7,
        "actions": rng.integers(0, n_actions, (steps, agents)).astype(np.int64),
        "log_probs": -rng.exponential(1.0, (steps, agents)).astype(F32),
        "values": rng.uniform(-5, 5, (steps, agents)).astype(F32),
        "rewards": rng.uniform(-2, 2, (steps, agents)).astype(F32),
        "terminated": rng.random((steps, agents)) < p_term,
        "truncated": rng.random((steps, agents)) < p_trunc,
        "valid": rng.random((steps, agents)) >= p_invalid,
        "bootstrap": rng.uniform(-5, 5, (steps, agents)).astype(F32),
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    steps=st.integers(1, 24),
    agents=st.integers(1, 5),
    obs_dim=st.integers(1, 4),
    n_actions=st.integers(1, 5),
    gamma=st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0]) | st.floats(0.0, 1.0),
    lam=st.sampled_from([0.0, 0.95, 1.0]) | st.floats(0.0, 1.0),
    capacity_extra=st.integers(0, 3),
)
def test_gae_matches_the_numpy_reference(
    seed: int, steps: int, agents: int, obs_dim: int, n_actions: int, gamma: float, lam: float, capacity_extra: int
) -> None:
    rng = np.random.default_rng(seed)
    data = random_data(rng, steps, agents, obs_dim, n_actions)
    next_values = rng.uniform(-5, 5, agents).astype(F32)
    # A buffer larger than the data: GAE covers only the filled steps.
    buf = RolloutBuffer(steps + capacity_extra, agents, obs_dim, n_actions)
    fill(buf, data)
    assert len(buf) == steps
    assert buf.full == (capacity_extra == 0)
    buf.compute_gae(next_values, gamma, lam)
    g, lam32 = float(F32(gamma)), float(F32(lam))
    adv, ret = reference_gae(
        data["rewards"],
        data["values"],
        data["terminated"],
        data["truncated"],
        data["valid"],
        data["bootstrap"],
        next_values,
        g,
        lam32,
    )
    np.testing.assert_allclose(buf.advantages[:steps], adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(buf.returns[:steps], ret, rtol=1e-5, atol=1e-5)
    # The stored transitions are exactly what was added.
    for name in ADD_ORDER:
        stored = getattr(buf, name)[:steps]
        assert stored.dtype == data[name].dtype, name
        assert np.array_equal(stored, data[name]), name
    # Rows past the filled steps stay untouched.
    assert not buf.advantages[steps:].any() and not buf.returns[steps:].any()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    steps=st.integers(1, 24),
    agents=st.integers(1, 5),
    gamma=st.sampled_from([0.0, 0.9, 0.99, 1.0]) | st.floats(0.0, 1.0),
    lam=st.sampled_from([0.0, 0.95, 1.0]) | st.floats(0.0, 1.0),
    capacity_extra=st.integers(0, 3),
)
def test_gae_over_the_live_rows_is_gae_over_the_grid_with_any_values(
    seed: int, steps: int, agents: int, gamma: float, lam: float, capacity_extra: int
) -> None:
    """The learner collecting ahead recomputes the rows' advantages from its own critic's values (`ppo.overlap`):
    over the live rows alone, with each row's successor and end value (`successors`), `gae_rows` gives what GAE
    over the whole grid gives with those values in the live cells, for the acting values and for others."""
    rng = np.random.default_rng(seed)
    data = random_data(rng, steps, agents, 2, 3)
    next_values = rng.uniform(-5, 5, agents).astype(F32)
    buf = RolloutBuffer(steps + capacity_extra, agents, 2, 3)
    fill(buf, data)
    buf.compute_gae(next_values, gamma, lam)
    next_row, end_values = successors(buf, next_values)
    live = np.flatnonzero(data["valid"].reshape(-1))
    g, lam32 = float(F32(gamma)), float(F32(lam))
    rewards = data["rewards"].reshape(-1)[live]
    rows = (next_row.reshape(-1)[live], end_values.reshape(-1)[live])
    adv, ret = gae_rows(rewards, data["values"].reshape(-1)[live], *rows, g, lam32)
    np.testing.assert_allclose(adv, buf.advantages[:steps].reshape(-1)[live], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, buf.returns[:steps].reshape(-1)[live], rtol=1e-5, atol=1e-5)
    other = rng.uniform(-5, 5, len(live)).astype(F32)
    grid = np.zeros(steps * agents, F32)
    grid[live] = other
    want, _ = reference_gae(
        data["rewards"], grid.reshape(steps, agents), data["terminated"], data["truncated"], data["valid"],
        data["bootstrap"], next_values, g, lam32,
    )  # fmt: skip
    got, _ = gae_rows(rewards, other, *rows, g, lam32)
    np.testing.assert_allclose(got, want.reshape(-1)[live], rtol=1e-5, atol=1e-5)


def test_gae_rows_refuses_a_successor_that_is_not_a_later_row() -> None:
    ones = np.ones(3, F32)
    with pytest.raises(ValueError, match=r"next_row\[1\] = 1"):
        gae_rows(ones, ones, np.array([1, 1, -1]), ones, 0.9, 0.9)


def test_gae_hand_computed_cases() -> None:
    # One agent, four steps: truncation at t=1 (bootstrap 10), termination at t=3.
    data = {
        "rewards": np.array([[1.0], [1.0], [2.0], [3.0]], F32),
        "values": np.array([[0.5], [0.25], [1.0], [2.0]], F32),
        "terminated": np.array([[False], [False], [False], [True]]),
        "truncated": np.array([[False], [True], [False], [False]]),
        "valid": np.ones((4, 1), bool),
        "bootstrap": np.array([[0.0], [10.0], [0.0], [0.0]], F32),
    }
    steps = 4
    buf = RolloutBuffer(steps, 1, 1, 1)
    for t in range(steps):
        buf.add(
            np.zeros((1, 1), F32),
            np.ones((1, 1), bool),
            np.zeros(1, np.int64),
            np.zeros(1, F32),
            data["values"][t],
            data["rewards"][t],
            data["terminated"][t],
            data["truncated"][t],
            data["valid"][t],
            data["bootstrap"][t],
        )
    gamma, lam = 0.5, 0.5
    buf.compute_gae(np.array([100.0], F32), gamma, lam)
    a3 = 3.0 - 2.0  # terminated: ignores next_values = 100
    a2 = 2.0 + gamma * 2.0 - 1.0 + gamma * lam * a3
    a1 = 1.0 + gamma * 10.0 - 0.25  # truncated: bootstrap, trace cut
    a0 = 1.0 + gamma * 0.25 - 0.5 + gamma * lam * a1
    np.testing.assert_allclose(buf.advantages[:, 0], [a0, a1, a2, a3], rtol=1e-6)
    np.testing.assert_allclose(buf.returns[:, 0], np.array([a0, a1, a2, a3]) + data["values"][:, 0], rtol=1e-6)


def test_arrays_are_zero_copy_views() -> None:
    buf = RolloutBuffer(3, 2, 4, 5)
    names = [*ADD_ORDER, "advantages", "returns"]
    shapes = {"obs": (3, 2, 4), "masks": (3, 2, 5)}
    dtypes = {"obs": F32, "masks": np.bool_, "actions": np.int64, "terminated": np.bool_, "truncated": np.bool_}
    dtypes |= {"valid": np.bool_}
    views = {name: getattr(buf, name) for name in names}
    for name, arr in views.items():
        assert getattr(buf, name) is arr, f"{name}: a new object on every access"
        assert arr.shape == shapes.get(name, (3, 2)), name
        assert arr.dtype == dtypes.get(name, F32), name
        assert arr.flags.c_contiguous and arr.flags.writeable, name
    rng = np.random.default_rng(0)
    data = random_data(rng, 3, 2, 4, 5)
    fill(buf, data)
    # Views taken before add() see the data.
    for name in ADD_ORDER:
        assert np.array_equal(views[name], data[name]), name
    # Writes through a view are what compute_gae reads.
    buf.compute_gae(np.zeros(2, F32), 0.9, 0.95)
    before = views["advantages"].copy()
    views["rewards"][-1, 0] += 1.0
    views["valid"][:] = True
    views["terminated"][:] = False
    views["truncated"][:] = False
    buf.compute_gae(np.zeros(2, F32), 0.9, 0.95)
    assert views["advantages"][-1, 0] != before[-1, 0]
    adv, _ = reference_gae(
        views["rewards"],
        views["values"],
        views["terminated"],
        views["truncated"],
        views["valid"],
        views["bootstrap"],
        np.zeros(2),
        float(F32(0.9)),
        float(F32(0.95)),
    )
    np.testing.assert_allclose(views["advantages"], adv, rtol=1e-5, atol=1e-5)


def test_clear_reuses_the_storage() -> None:
    buf = RolloutBuffer(2, 1, 1, 2)
    rng = np.random.default_rng(1)
    data = random_data(rng, 2, 1, 1, 2)
    fill(buf, data)
    assert buf.full and len(buf) == 2
    rewards = buf.rewards
    buf.clear()
    assert not buf.full and len(buf) == 0
    assert buf.rewards is rewards
    fill(buf, random_data(rng, 2, 1, 1, 2))
    assert buf.full
    assert (buf.steps, buf.agents, buf.obs_dim, buf.n_actions) == (2, 1, 1, 2)


def step_arrays(agents: int = 2, obs_dim: int = 3, n_actions: int = 4) -> dict[str, np.ndarray]:
    return {
        "obs": np.zeros((agents, obs_dim), F32),
        "masks": np.ones((agents, n_actions), bool),
        "actions": np.zeros(agents, np.int64),
        "log_probs": np.zeros(agents, F32),
        "values": np.zeros(agents, F32),
        "rewards": np.zeros(agents, F32),
        "terminated": np.zeros(agents, bool),
        "truncated": np.zeros(agents, bool),
        "valid": np.ones(agents, bool),
        "bootstrap": np.zeros(agents, F32),
    }


def test_add_on_a_full_buffer_is_a_value_error() -> None:
    buf = RolloutBuffer(1, 2, 3, 4)
    buf.add(**step_arrays())
    with pytest.raises(ValueError, match="full"):
        buf.add(**step_arrays())
    assert len(buf) == 1


@pytest.mark.parametrize("name", ADD_ORDER)
def test_wrong_length_arrays_are_a_value_error(name: str) -> None:
    buf = RolloutBuffer(2, 2, 3, 4)
    arrays = step_arrays()
    good = arrays[name]
    arrays[name] = np.zeros((3, *good.shape[1:]), good.dtype) if good.ndim == 2 else np.zeros(3, good.dtype)
    with pytest.raises(ValueError, match=name):
        buf.add(**arrays)
    assert len(buf) == 0, "a rejected add stores nothing"
    if good.ndim == 2:
        arrays[name] = np.zeros((good.shape[0], good.shape[1] + 1), good.dtype)
        with pytest.raises(ValueError, match=name):
            buf.add(**arrays)
        assert len(buf) == 0


@pytest.mark.parametrize(("gamma", "lam"), [(-0.1, 0.95), (1.01, 0.95), (0.99, -0.5), (0.99, 1.5), (float("nan"), 0.9)])
def test_gamma_and_lambda_outside_unit_interval_raise(gamma: float, lam: float) -> None:
    buf = RolloutBuffer(1, 2, 3, 4)
    buf.add(**step_arrays())
    with pytest.raises(ValueError, match="gamma"):
        buf.compute_gae(np.zeros(2, F32), gamma, lam)


def test_next_values_must_have_one_value_per_agent() -> None:
    buf = RolloutBuffer(1, 2, 3, 4)
    buf.add(**step_arrays())
    with pytest.raises(ValueError, match="next_values"):
        buf.compute_gae(np.zeros(3, F32), 0.99, 0.95)


@pytest.mark.parametrize("dims", [(0, 1, 1, 1), (1, 0, 1, 1), (1, 1, 0, 1), (1, 1, 1, 0)])
def test_empty_dimensions_are_rejected(dims: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError, match=">= 1"):
        RolloutBuffer(*dims)
