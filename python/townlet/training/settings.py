"""Config sections of the training layer (`ppo:`, `training:`), importable without torch."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MODES = ("rollout", "replay", "mixed")


class WarmStart(BaseModel):
    """`<phase>.warm_start` — where a phase's policy comes from and where it goes."""

    model_config = ConfigDict(extra="forbid")
    load_path: str | None = Field(None, description="start from this checkpoint (validated before anything changes)")
    save_path: str = Field("logs/ppo/checkpoints/ppo_latest.json", description="rewritten when the phase completes")
    metadata: dict[str, str] = Field(default_factory=dict, description="copied into the saved checkpoint")
    allow_mismatch: bool = Field(False, description="load despite a config-hash or spec mismatch (warns, recorded)")


class PPOConfig(BaseModel):
    """`ppo:` — PPO hyper-parameters (flags of run_training.py override them)."""

    model_config = ConfigDict(extra="forbid")
    learning_rate: float = Field(3e-4, gt=0)
    anneal_lr: bool = True
    num_envs: int = Field(8, ge=1, description="towns stepped together")
    rollout_ticks: int = Field(128, ge=1, description="ticks collected per epoch")
    gamma: float = Field(0.99, ge=0, le=1)
    gae_lambda: float = Field(0.95, ge=0, le=1)
    num_minibatches: int = Field(4, ge=1)
    update_epochs: int = Field(2, ge=1)
    norm_adv: bool = True
    clip_coef: float = Field(0.2, gt=0)
    clip_vloss: bool = True
    ent_coef: float = Field(0.01, ge=0)
    vf_coef: float = Field(0.5, ge=0)
    max_grad_norm: float = Field(0.5, gt=0)
    target_kl: float | None = Field(None, gt=0)
    hidden: int = Field(128, ge=8)
    torch_threads: int = Field(1, ge=1)
    episode_ticks: int | None = Field(None, ge=1, description="episode length (default: the scenario's or a day)")
    warm_start: WarmStart = WarmStart()


class TrainingSection(BaseModel):
    """`training:` — what `run_training` does by default."""

    model_config = ConfigDict(extra="forbid")
    mode: str = Field("rollout", pattern="^(rollout|replay|mixed)$")
    epochs: int = Field(10, ge=1)
    checkpoint_every: int = Field(0, ge=0, description="also save every N epochs (0: only at the end)")
    replay_manifest: str | None = None
