"""Config sections of the training layer (`ppo:`, `training:`), importable without torch."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MODES = ("rollout", "replay", "mixed")

#: Stands for the config's id in a warm-start path; `load_config` fills it in (`for_config`).
CONFIG_ID = "{config_id}"


def config_folder(config_id: str) -> str:
    """The config id as one folder name (characters outside `A-Za-z0-9._-` become `_`)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", config_id).lstrip(".") or "_"


def checkpoint_dir(phase: str, config_id: str = CONFIG_ID) -> str:
    """Where a phase keeps its checkpoints by default: per config id (SPEC §8), so work on one
    config never leaks into another."""
    folder = config_id if config_id == CONFIG_ID else config_folder(config_id)
    return f"logs/{folder}/{phase}/checkpoints"


def latest_path(phase: str, config_id: str = CONFIG_ID) -> str:
    """Where a phase saves its checkpoint by default: `logs/<config_id>/<phase>/checkpoints/<phase>_latest.json`."""
    return f"{checkpoint_dir(phase, config_id)}/{phase}_latest.json"


def best_path_for(save_path: str) -> str:
    """The best-known checkpoint beside `save_path`: `X_latest.json` -> `X_best.json`, else `X_best.json`
    for `X.json` (same suffix)."""
    p = Path(save_path)
    stem = p.stem[: -len("_latest")] if p.stem.endswith("_latest") else p.stem
    return str(p.with_name(f"{stem}_best{p.suffix}"))


def _fill(path: str | None, config_id: str) -> str | None:
    return path.replace(CONFIG_ID, config_folder(config_id)) if path else path


class WarmStart(BaseModel):
    """`<phase>.warm_start` — where a phase's policy comes from and where it goes.

    Loading a checkpoint of the same phase and config resumes it (optimizer, counters, RNG streams
    and, for PPO, the towns); a checkpoint of another phase (or an overridden mismatch) only
    provides the starting weights."""

    model_config = ConfigDict(extra="forbid")
    load_path: str | None = Field(None, description="start from this checkpoint (validated before anything changes)")
    save_path: str = Field(
        latest_path("ppo"), description="rewritten whenever the phase saves ({config_id}: the config's id)"
    )
    best_path: str | None = Field(None, description="the best-known checkpoint (default: save_path's X_best.json)")
    metadata: dict[str, str] = Field(default_factory=dict, description="copied into the saved checkpoint")
    allow_mismatch: bool = Field(False, description="load despite a config-hash or spec mismatch (warns, recorded)")
    inherit: str | None = Field(
        None, description="with no load_path: start from this phase's saved checkpoint when it exists"
    )

    def best(self) -> str:
        return self.best_path or best_path_for(self.save_path)

    def for_config(self, config_id: str) -> Self:
        """`{config_id}` in the paths replaced by the config's id (its folder name)."""
        update = {
            key: _fill(value, config_id)
            for key in ("load_path", "save_path", "best_path")
            if (value := getattr(self, key)) and CONFIG_ID in value
        }
        return self.model_copy(update=update) if update else self

    def clash(self) -> str | None:
        """Why the best-known checkpoint would overwrite the latest one (same file, or a safetensors
        sidecar landing on the other), else None."""

        def files(path: str) -> set[Path]:
            p = Path(path)
            return {p, p.with_suffix(".json")} if p.suffix == ".safetensors" else {p}

        shared = files(self.save_path) & files(self.best())
        if shared:
            return (
                f"best_path {self.best()} would overwrite {sorted(map(str, shared))[0]} of save_path {self.save_path}"
            )
        return None


class PPOWarmStart(WarmStart):
    """PPO inherits from the behaviour-cloning checkpoint by default (`inherit: null` opts out)."""

    inherit: str | None = Field("bc", pattern="^bc$")


class BCWarmStart(WarmStart):
    save_path: str = Field(
        latest_path("bc"), description="rewritten whenever the phase saves ({config_id}: the config's id)"
    )
    inherit: None = None


class BCConfig(BaseModel):
    """`bc:` — behaviour cloning on captured (expert) rollouts: cross-entropy on the masked policy
    logits, plus a value regression on the discounted returns so PPO starts with a useful critic."""

    model_config = ConfigDict(extra="forbid")
    manifest: str | None = Field(None, description="capture manifest to learn from (or --capture-dir/--bc-manifest)")
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, ge=1)
    epochs: int = Field(10, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    value_coef: float = Field(0.5, ge=0, description="weight of the value regression (0: policy only)")
    gamma: float = Field(
        0.998, ge=0, le=1, description="discount of the value targets (PPO's, so a warm-started critic fits)"
    )
    holdout_fraction: float = Field(
        0.2, ge=0, lt=1, description="last fraction of each sample's ticks held out to measure accuracy"
    )
    hidden: int = Field(128, ge=8)
    torch_threads: int = Field(1, ge=1)
    warm_start: BCWarmStart = BCWarmStart()


class PPOConfig(BaseModel):
    """`ppo:` — PPO hyper-parameters (flags of run_training.py override them)."""

    model_config = ConfigDict(extra="forbid")
    learning_rate: float = Field(3e-4, gt=0)
    anneal_lr: bool = True
    num_envs: int = Field(8, ge=1, description="towns stepped together")
    rollout_ticks: int = Field(128, ge=1, description="ticks collected per epoch")
    gamma: float = Field(
        0.998, ge=0, le=1, description="discount: 0.998 sees a shift's pay from the walk to work (docs/training.md)"
    )
    gae_lambda: float = Field(0.95, ge=0, le=1)
    num_minibatches: int = Field(4, ge=1)
    update_epochs: int = Field(2, ge=1)
    norm_adv: bool = True
    clip_coef: float = Field(0.2, gt=0)
    clip_vloss: bool = True
    ent_coef: float = Field(0.01, ge=0)
    ent_coef_final: float | None = Field(
        None,
        ge=0,
        description=(
            "anneal the entropy coefficient linearly from ent_coef to this over the run's epochs (as anneal_lr does "
            "the learning rate), so the final policy is near-deterministic and its greedy actions do what its sampled "
            "ones do; null keeps ent_coef constant (the ppo phase; the memory phase keeps ent_coef)"
        ),
    )
    vf_coef: float = Field(0.5, ge=0)
    kickstart_coef: float = Field(
        0.0,
        ge=0,
        description=(
            "kickstarting: the weight of a cross-entropy term pulling the policy towards the scripted expert's action "
            "in every state it visits, falling linearly to 0 over the run as the learning rate does; 0 (the default) "
            "turns it off. The ppo phase on the town only (the expert is the town's): docs/training.md"
        ),
    )
    kickstart_until: float = Field(
        1.0,
        gt=0,
        le=1,
        description=(
            "the share of the run by which kickstarting's weight has fallen linearly to 0 (1: the run's end); the "
            "rest of the run is plain PPO"
        ),
    )
    kickstart_final: float = Field(
        0.0,
        ge=0,
        description=(
            "the weight kickstarting falls to from kickstart_coef (at kickstart_until of the run, and keeps after); 0 "
            "(the default) fades it out: a floor keeps the expert's action the policy's most likely one where it "
            "imitates, to the run's end. Off with kickstart_coef 0"
        ),
    )
    kickstart_on: Literal["all", "duties", "shift"] = Field(
        "all",
        description=(
            "the states kickstarting imitates the expert in, by why the expert acts there: all; duties (a need, "
            "sleep, an activity under way, the shift), leaving its leisure, a chat or going home with nothing due, to "
            "the rewards alone; or shift only (setting off for work, queueing there, working)"
        ),
    )
    max_grad_norm: float = Field(0.5, gt=0)
    target_kl: float | None = Field(None, gt=0)
    hidden: int = Field(128, ge=8)
    torch_threads: int | Literal["auto"] = Field(
        1,
        description=(
            "torch threads: a fixed count, or auto (collection and learning each on one thread or on every usable "
            "CPU, up to 4, whichever measures faster; one thread with precision fp32, or where bfloat16 products "
            "split their sums by thread): training/threads.py"
        ),
    )
    overlap: bool = Field(
        False,
        description=(
            "collect the next epoch's rollout in a process of its own while the update learns from this one, acting "
            "with the weights from before this epoch's update (one update behind: PPO's ratio is taken to the "
            "policy that acted); nearly the sum of collecting and learning becomes the larger of the two. The ppo "
            "phase's own rollouts only (not replay, mixed or shards); a fixed torch_threads (docs/training.md)"
        ),
    )
    precision: str = Field(
        "bf16",
        pattern="^(fp32|bf16)$",
        description=(
            "the policy's hidden-layer products while training: bf16 (float32 weights, heads and losses) or fp32"
        ),
    )
    episode_ticks: int | None = Field(None, ge=1, description="episode length (default: the scenario's or a day)")
    warm_start: PPOWarmStart = PPOWarmStart()

    @field_validator("torch_threads", mode="before")
    @classmethod
    def _count_or_auto(cls, value: object) -> object:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError("expected a count (>= 1) or auto")

    @model_validator(mode="after")
    def _overlap_on_fixed_threads(self) -> Self:
        if self.overlap and self.torch_threads == "auto":
            raise ValueError(
                "overlap: needs a fixed torch_threads (collection and the update each run on their own; "
                "auto would switch counts under the other)"
            )
        return self

    @staticmethod
    def spent(epoch: int, epochs: int) -> float:
        """The share of a run of `epochs` epochs spent before epoch `epoch` (1..`epochs`), in [0, 1]: what the
        learning rate and the entropy coefficient follow (a wall-clock budget's share spent takes its place)."""
        return min(1.0, max(0.0, (epoch - 1) / max(1, epochs)))

    def lr_at(self, spent: float) -> float:
        """The learning rate once `spent` (0..1) of the run has passed: `learning_rate` falling linearly to 0 at
        the run's end when `anneal_lr`, constant otherwise."""
        return self.learning_rate * (1.0 - spent) if self.anneal_lr else self.learning_rate

    def kickstart_at(self, spent: float) -> float:
        """The kickstarting weight once `spent` (0..1) of the run has passed: `kickstart_coef` falling linearly to
        `kickstart_final` when `kickstart_until` of the run has passed, `kickstart_final` after."""
        fade = max(0.0, 1.0 - spent / self.kickstart_until)
        return self.kickstart_final + (self.kickstart_coef - self.kickstart_final) * fade

    def ent_coef_at(self, spent: float) -> float:
        """The entropy coefficient once `spent` (0..1) of the run has passed: `ent_coef` at the start, moving
        linearly towards `ent_coef_final` (when set) as the learning rate anneals; `ent_coef` throughout otherwise."""
        if self.ent_coef_final is None:
            return self.ent_coef
        return self.ent_coef + (self.ent_coef_final - self.ent_coef) * spent


#: The memory phase's architectures (`training.memory.arch`, `--arch`): training/network_memory.py.
MEMORY_ARCHS = ("lstm", "gru", "attention")
#: Stands for the architecture in a memory checkpoint path.
ARCH = "{arch}"
_WarmT = TypeVar("_WarmT", bound=BaseModel)


def arch_paths(warm: _WarmT, arch: str, phase: str) -> _WarmT:
    """`warm` with `{arch}` in its save and best paths filled with `arch`, and a path to another architecture's
    `<phase>/checkpoints/<arch>_agent_{latest,best}` file renamed to `arch`'s (the same object when nothing changes)."""
    pattern = re.compile(rf"(^|/){phase}/checkpoints/(lstm|gru|attention)_agent_(latest|best)(\.json|\.safetensors)$")
    update = {}
    for key in ("save_path", "best_path"):
        value = getattr(warm, key)
        if value:
            filled = pattern.sub(
                lambda m: f"{m[1]}{phase}/checkpoints/{arch}_agent_{m[3]}{m[4]}", value.replace(ARCH, arch)
            )
            if filled != value:
                update[key] = filled
    return warm.model_copy(update=update) if update else warm


class MemoryWarmStart(WarmStart):
    """The memory phase inherits the ppo phase's checkpoint of the same config by default; each
    architecture saves to its own `logs/<config_id>/memory/checkpoints/<arch>_agent_latest.json`."""

    save_path: str = Field(
        f"{checkpoint_dir('memory')}/{ARCH}_agent_latest.json",
        description="rewritten whenever the phase saves ({config_id}, {arch}: the config's id, the architecture)",
    )
    inherit: str | None = Field("ppo", pattern="^ppo$")


class MemorySection(BaseModel):
    """`training.memory` — the memory phase (`--mode memory`): a recurrent or attention core between
    the feed-forward agent's encoders and heads, trained by recurrent PPO on whole sequences (the
    `ppo:` hyper-parameters)."""

    model_config = ConfigDict(extra="forbid")
    arch: str = Field("lstm", pattern="^(lstm|gru|attention)$", description="lstm | gru | attention (or --arch)")
    seq_len: int = Field(16, ge=1, description="ticks per training sequence (truncated backpropagation through time)")
    context: int = Field(16, ge=1, description="attention: the last K steps each step attends to")
    warm_start: MemoryWarmStart = MemoryWarmStart()


class MemoryConfig(PPOConfig):
    """The memory phase's effective section: the `ppo:` hyper-parameters with `training.memory`'s
    fields and warm start. `{arch}` in the save and best paths (and a default memory checkpoint
    name of another architecture) becomes this architecture's."""

    arch: str = Field("lstm", pattern="^(lstm|gru|attention)$")
    seq_len: int = Field(16, ge=1)
    context: int = Field(16, ge=1)
    warm_start: MemoryWarmStart = MemoryWarmStart()  # type: ignore[assignment]
    #: The recurrent trainer runs on a fixed count: `auto` (the `ppo:` default) is one thread here.
    torch_threads: int = Field(1, ge=1)

    @field_validator("torch_threads", mode="before")
    @classmethod
    def _one_thread_for_auto(cls, value: object) -> object:
        return 1 if value == "auto" else value

    @model_validator(mode="after")
    def _arch_paths(self) -> Self:
        filled = arch_paths(self.warm_start, self.arch, "memory")
        if filled is not self.warm_start:
            self.warm_start = filled
        return self

    @staticmethod
    def of(ppo: PPOConfig, memory: MemorySection) -> MemoryConfig:
        """The memory phase's section of a config (`ppo:` and `training.memory`)."""
        # Kickstarting is the feed-forward ppo phase's: the memory phase trains on its own rewards alone. Its
        # recurrent collector does not collect ahead (`overlap`).
        fields = {
            **ppo.model_dump(
                exclude={
                    "warm_start",
                    "kickstart_coef",
                    "kickstart_until",
                    "kickstart_final",
                    "kickstart_on",
                    "overlap",
                }
            ),
            **memory.model_dump(),
        }
        return MemoryConfig.model_validate(fields)


class BCGate(BaseModel):
    """`training.bc` — when a behaviour-cloning run passes: its held-out accuracy reaches the threshold
    and beats the majority-action baseline."""

    model_config = ConfigDict(extra="forbid")
    accuracy_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="held-out accuracy the BC gate needs (default: training.anneal_accuracy_threshold, else 0.8)",
    )


class AnnealStage(BaseModel):
    """One stage of `training.anneal.schedule`: behaviour cloning (gated on held-out accuracy) or PPO."""

    model_config = ConfigDict(extra="forbid")
    mode: str = Field(pattern="^(bc|ppo)$")
    epochs: int | None = Field(None, ge=1, description="default: bc.epochs (bc) or training.epochs (ppo)")
    data_mode: str = Field("rollout", pattern="^(rollout|replay|mixed)$", description="ppo stages: what PPO trains on")
    anneal_ratio: float | None = Field(
        None, ge=0, le=1, description="ppo stages in mixed data mode: the blend (default: training.anneal_ratio)"
    )


def _default_schedule() -> list[AnnealStage]:
    return [AnnealStage(mode="bc"), AnnealStage(mode="ppo", epochs=1)]


class AnnealSection(BaseModel):
    """`training.anneal` — the BC -> PPO anneal (`--mode anneal`, docs/anneal.md): its stages, and when a
    PPO stage's loss or queue-conflict events drift too far from their baselines (HOLD)."""

    model_config = ConfigDict(extra="forbid")
    schedule: list[AnnealStage] = Field(default_factory=_default_schedule, min_length=1)
    log_dir: str | None = Field(None, description="where anneal_results.json goes (default: logs/<config_id>/anneal)")
    loss_drift_max: float = Field(0.10, ge=0, description="HOLD when |loss_total - baseline| / baseline is above it")
    queue_drift_max: float = Field(
        0.15, ge=0, description="HOLD when queue-conflict events or intensity drift more than this fraction"
    )
    loss_baseline: float | None = Field(None, description="default: the previous PPO stage's loss_total")
    queue_baseline: float | None = Field(None, ge=0, description="default: the previous PPO stage's events")
    intensity_baseline: float | None = Field(None, ge=0, description="default: the previous PPO stage's intensity")


class TrainingSection(BaseModel):
    """`training:` — what `run_training` does by default."""

    model_config = ConfigDict(extra="forbid")
    mode: str = Field("rollout", pattern="^(rollout|replay|mixed|bc|anneal|memory|bc_memory)$")
    epochs: int = Field(10, ge=1)
    checkpoint_every: int = Field(0, ge=0, description="also save every N epochs (0: only at the end)")
    replay_manifest: str | None = None
    bc: BCGate = BCGate()
    anneal_accuracy_threshold: float | None = Field(
        None, ge=0, le=1, description="the anneal's BC-stage gate (seed 001's name; default: training.bc's)"
    )
    anneal_ratio: float = Field(
        1.0, ge=0, le=1, description="mixed mode: share of rollout actions the learned policy takes (the rest scripted)"
    )
    anneal: AnnealSection = AnnealSection()
    #: Not part of the hash of the other phases' configs (the memory phase's run config holds it).
    memory: MemorySection = Field(default_factory=MemorySection, exclude=True)


Sections = TypeVar("Sections", bound=BaseModel)


def for_config(sections: Sections, config_id: str) -> Sections:
    """Every phase section's warm-start paths with `{config_id}` filled in (the default save paths
    are `logs/{config_id}/<phase>/checkpoints/<phase>_latest.json`): what `load_config` returns."""
    update: dict[str, BaseModel] = {}
    for name in type(sections).model_fields:
        section = getattr(sections, name)
        warm = getattr(section, "warm_start", None)
        if isinstance(section, BaseModel) and isinstance(warm, WarmStart):
            filled = warm.for_config(config_id)
            if filled is not warm:
                update[name] = section.model_copy(update={"warm_start": filled})
    return sections.model_copy(update=update) if update else sections
