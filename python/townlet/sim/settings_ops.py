"""`ops:` — the serving shard's stability monitor thresholds and its promotion settings (docs/promotion.md).

Every alert of `townlet.ops.monitor` has its threshold here."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StabilitySettings(BaseModel):
    """`ops.stability`: per-tick alerts, promotion windows."""

    model_config = ConfigDict(extra="forbid")
    window_ticks: int = Field(1000, ge=1, description="length of a promotion window")
    required_passes: int = Field(2, ge=1, description="passing windows in a row before candidate_ready")
    allowed_alerts: list[str] = Field(default_factory=list, description="alerts that do not fail a window")
    # starvation_spike
    starvation_hunger: float = Field(0.05, ge=0, le=1, description="hunger at or below this is starving")
    starvation_ticks: int = Field(1, ge=1, description="consecutive starving ticks that make one incident")
    max_starvation_incidents: int = Field(0, ge=0, description="incidents allowed in a window")
    # lateness_spike
    lateness_factor: float = Field(2.0, gt=0, description="late shift starts in a window allowed: baseline x this")
    lateness_baseline: float | None = Field(
        None, ge=0, description="late starts per window (default: the mean of the windows so far)"
    )
    lateness_floor: float = Field(1.0, ge=0, description="the baseline is at least this")
    # option_thrashing
    option_window_ticks: int = Field(600, ge=1)
    max_option_switch_rate: float = Field(0.25, ge=0, le=1, description="activity changes per agent-tick")
    option_min_samples: int = Field(10, ge=1, description="ticks before the rate counts")
    # reward_variance_spike
    reward_window_ticks: int = Field(1000, ge=1)
    max_reward_variance: float = Field(0.25, ge=0)
    reward_min_samples: int = Field(20, ge=1, description="ticks before the variance counts")
    # queue_fairness_pressure
    max_queue_events_per_tick: int = Field(5, ge=1, description="ghost steps + rotations in one tick")
    # rivalry_spike
    rivalry_threshold: float = Field(0.7, ge=0, le=1, description="rivalry at or above this is a rivalry")
    max_rivalry_events_per_tick: int = Field(5, ge=1, description="pairs crossing the threshold in one tick")
    # employment_exit_backlog / employment_exit_queue_overflow
    max_exit_backlog: int = Field(2, ge=0, description="pending employment exits allowed")
    # charter KPIs (seed 003)
    min_self_sufficiency: float = Field(0.70, ge=0, le=1)
    min_relationship_coverage: float = Field(0.60, ge=0, le=1)
    min_tenure_days: float = Field(3.0, ge=0, description="an agent leaving before this many days is an alert")
    charter_after_ticks: int = Field(
        2160, ge=0, description="the rate KPIs (cumulative) are judged from this world tick on"
    )


class PromotionSettings(BaseModel):
    """`ops.promotion`: where releases, candidates and the history go; the canary."""

    model_config = ConfigDict(extra="forbid")
    release_dir: str = Field("snapshots/rel", description="the release checkpoint (relative to the working folder)")
    shadow_dir: str = Field("snapshots/shadow", description="candidates (training writes here)")
    release_snapshots: str = Field("release", description="world snapshots before a promotion, under the snapshot root")
    rollouts_path: str = Field("ops/rollouts.md", description="human log")
    history_path: str = Field("logs/promotion_history.jsonl", description="machine log")
    shadow_log: str | None = Field("logs/shadow_actions.jsonl", description="shadow actions per tick (None: off)")
    canary_windows: int = Field(2, ge=0, description="windows after a promotion in which a breach rolls back")
    canary_alerts: list[str] | None = Field(None, description="alerts that breach (default: every disallowed one)")
    auto_rollback: bool = True


class SnapshotSettings(BaseModel):
    """`ops.snapshots`: autosave of the serving shard (the snapshots kept before promotions are never pruned)."""

    model_config = ConfigDict(extra="forbid")
    autosave_every: int = Field(0, ge=0, description="save the shard every N ticks (0: off)")
    keep_last: int = Field(5, ge=1, description="autosaves kept (older ones are deleted)")
    folder: str = Field("auto", description="under the snapshot root")


class OpsSection(BaseModel):
    """`ops:`."""

    model_config = ConfigDict(extra="forbid")
    stability: StabilitySettings = StabilitySettings()
    promotion: PromotionSettings = PromotionSettings()
    snapshots: SnapshotSettings = SnapshotSettings()
