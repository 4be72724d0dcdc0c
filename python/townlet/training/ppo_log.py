"""PPO step 4, log: `epoch_record` turns an epoch (its rows, rollout and update statistics) into
one telemetry record (v1.1); the time split, the episodes' KPIs and the baseline fields. Re-exported
by `townlet.training.ppo`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from townlet.sim.settings import PPOConfig

if TYPE_CHECKING:
    from townlet.training.ppo import Dataset, RolloutStats
    from townlet.training.ppo_loss import UpdateStats


def explained_variance(pred: npt.NDArray[np.float32], target: npt.NDArray[np.float32]) -> float:
    var = float(np.var(target))
    return float("nan") if var == 0 else 1.0 - float(np.var(target - pred)) / var


def _mean(xs: list[float]) -> float:
    return float(np.mean(xs)) if xs else 0.0


def epoch_record(
    *,
    epoch: int,
    steps: int,
    lr: float,
    data: Dataset,
    upd: UpdateStats,
    roll: RolloutStats | None,
    data_mode: str,
    cycle_id: int,
    rollout_ticks: int,
    duration: float,
    baseline: dict[str, float],
    cfg: PPOConfig,
    events: dict[str, float] | None = None,
) -> dict[str, Any]:
    """One telemetry record (all v1.1 fields, social and hygiene counters, conflict block).
    `events` (native event name -> count) default to the rollout's."""
    ev = events if events is not None else (roll.events if roll else {})
    n_succ = ev.get("chat_success", 0.0)
    corr = 0.0
    if len(data) > 1 and np.std(data.rewards) > 0 and np.std(data.advantages) > 0:
        corr = float(np.corrcoef(data.rewards, data.advantages)[0, 1])
    fs = np.array(upd.feature_stats) if upd.feature_stats else np.zeros((1, 4))
    loss_total = _mean(upd.pg_losses) + cfg.vf_coef * _mean(upd.v_losses) - cfg.ent_coef * _mean(upd.entropies)
    rec: dict[str, Any] = {
        "epoch": epoch,
        "updates": upd.updates,
        "transitions": len(data),
        "loss_policy": _mean(upd.pg_losses),
        "loss_value": _mean(upd.v_losses),
        "loss_entropy": _mean(upd.entropies),
        "loss_total": loss_total,
        "clip_fraction": _mean(upd.clipfracs),
        "clip_fraction_max": max(upd.clipfracs, default=0.0),
        "clip_triggered_minibatches": sum(1 for c in upd.clipfracs if c > 0),
        "adv_mean": _mean(upd.adv_means),
        "adv_std": _mean(upd.adv_stds),
        "adv_zero_std_batches": sum(1 for s in upd.adv_stds if s < 1e-8),
        "adv_min_std": min(upd.adv_stds, default=0.0),
        "grad_norm": _mean(upd.grad_norms),
        "kl_divergence": _mean(upd.kls),
        "telemetry_version": "1.1",
        "lr": lr,
        "steps": steps,
        "epoch_duration_sec": duration,
        "data_mode": data_mode,
        "cycle_id": cycle_id,
        "batch_entropy_mean": _mean(upd.entropies),
        "batch_entropy_std": float(np.std(upd.entropies)) if upd.entropies else 0.0,
        "grad_norm_max": max(upd.grad_norms, default=0.0),
        "kl_divergence_max": max((abs(k) for k in upd.kls), default=0.0),
        "reward_advantage_corr": corr,
        "reward_mean": float(data.rewards.mean()) if len(data) else 0.0,
        "rollout_ticks": rollout_ticks,
        "queue_conflict_events": ev.get("queue_conflict", 0.0),
        "queue_conflict_intensity_sum": ev.get("queue_conflict_value", 0.0),
        "shared_meal_events": ev.get("shared_meal", 0.0),
        "late_help_events": ev.get("employment_helped_when_late", 0.0),
        "shift_takeover_events": ev.get("employment_took_my_shift", 0.0),
        "chat_success_events": n_succ,
        "chat_failure_events": ev.get("chat_failure", 0.0),
        "chat_quality_mean": ev.get("chat_success_value", 0.0) / n_succ if n_succ else 0.0,
        "utility_outage_events": ev.get("perturbation_blackout", 0.0) + ev.get("perturbation_outage", 0.0),
        "shower_complete_events": ev.get("shower_complete", 0.0),
        "sleep_complete_events": ev.get("sleep_complete", 0.0),
        "conflict.rivalry_max_mean_avg": float(fs[:, 0].mean()),
        "conflict.rivalry_max_max_avg": float(fs[:, 1].mean()),
        "conflict.rivalry_avoid_count_mean_avg": float(fs[:, 2].mean()),
        "conflict.rivalry_avoid_count_max_avg": float(fs[:, 3].mean()),
        "sps": (roll.transitions / duration) if roll and duration > 0 else 0.0,
        "approx_kl": _mean(upd.kls),
        "explained_variance": explained_variance(data.values, data.returns) if len(data) else 0.0,
        "episode_return_mean": _mean(roll.episode_returns) if roll else 0.0,
        "episodes": len(roll.episode_returns) if roll else 0,
        "early_stop": upd.early_stop,
        "time_env_sec": roll.env_seconds if roll else 0.0,
        "time_policy_sec": roll.policy_seconds if roll else 0.0,
        "time_learn_sec": upd.seconds,
        **time_split(duration, roll, upd),
        **episode_kpis(roll),
    }
    if upd.imitation_losses:
        rec["kickstart_coef"] = cfg.kickstart_coef
        rec["loss_imitation"] = _mean(upd.imitation_losses)
        rec["loss_total"] += cfg.kickstart_coef * rec["loss_imitation"]
    rec.update(baseline)
    if not np.isfinite(rec["explained_variance"]):
        rec["explained_variance"] = 0.0
    return rec


#: The town KPIs an epoch record carries (as `kpi_<name>`), averaged over the town episodes that
#: ended during the epoch's rollout; faints and evictions per town episode.
EPISODE_KPIS = ("self_sufficiency", "on_time_rate", "relationship_coverage", "faints", "evictions")


def episode_kpis(roll: RolloutStats | None) -> dict[str, float]:
    """`kpi_*` fields: the mean KPIs of the town episodes that ended this epoch (none when none did)."""
    if roll is None or not roll.episode_kpis:
        return {}
    return {f"kpi_{k}": float(np.mean([float(e[k]) for e in roll.episode_kpis])) for k in EPISODE_KPIS}


def time_split(duration: float, roll: RolloutStats | None, upd: UpdateStats) -> dict[str, float]:
    """The epoch's wall time in four parts that add up to `duration`: stepping the towns, the
    policy's forward passes while collecting, the PPO update, and everything else (buffer
    bookkeeping, GAE, the record)."""
    env = roll.env_seconds if roll else 0.0
    inference = roll.inference_seconds if roll else 0.0
    return {
        "time_inference_sec": inference,
        "time_other_sec": max(0.0, duration - env - inference - upd.seconds),
    }


def baseline_from_samples(
    sample_rewards: list[tuple[float, float]], log_prob_mean: float | None = None
) -> dict[str, float]:
    """baseline_* fields from per-sample (reward sum, reward mean) pairs."""
    if not sample_rewards:
        return {}
    sums = [s for s, _ in sample_rewards]
    means = [m for _, m in sample_rewards]
    out = {
        "baseline_sample_count": float(len(sample_rewards)),
        "baseline_reward_mean": float(np.mean(means)),
        "baseline_reward_sum": float(np.sum(sums)),
        "baseline_reward_sum_mean": float(np.mean(sums)),
    }
    if log_prob_mean is not None:
        out["baseline_log_prob_mean"] = log_prob_mean
    return out
