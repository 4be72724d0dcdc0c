"""The ppo phase: on-policy PPO in VecTown (`rollout`), PPO on captured samples with their stored
behaviour log-probabilities (`replay`), or both each epoch (`mixed`)."""

from __future__ import annotations

from pathlib import Path

import torch

from townlet.sim.config import TownConfig
from townlet.sim.settings import MODES, PPOConfig
from townlet.training.data import ReplayData, load_replay
from townlet.training.envs import TownTrainEnv
from townlet.training.mixed import attach_blend, blend_ratio
from townlet.training.request import EpochCallback, PhaseSection, RunOutputs, TrainPlan, TrainRequest
from townlet.training.saver import phase_saver, run_saving
from townlet.training.trainer import Trainer, make_policy
from townlet.training.warm_start import Notify, load_weights, start_epoch


class PPOPhase:
    name: str = "ppo"
    modes: tuple[str, ...] = MODES
    overrides: frozenset[str] = frozenset(PPOConfig.model_fields) - {"warm_start"}

    def section(self, config: TownConfig) -> PhaseSection:
        return config.sections.ppo

    def default_epochs(self, config: TownConfig, section: PhaseSection) -> int:
        return config.sections.training.epochs

    def log_path(self, request: TrainRequest) -> Path | None:
        return request.ppo_log

    def load_data(
        self, request: TrainRequest, config: TownConfig, section: PhaseSection, mode: str
    ) -> ReplayData | None:
        given = config.sections.training.replay_manifest
        manifest = request.replay_manifest or (Path(given) if given else None)
        return load_replay(manifest, request.capture_dir) if mode in ("replay", "mixed") else None

    def check_plan(self, plan: TrainPlan) -> TrainPlan:
        return plan

    def run(self, plan: TrainPlan, *, on_epoch: EpochCallback | None, notify: Notify) -> RunOutputs:
        ppo, replay, meta = plan.section, plan.data, plan.meta
        assert isinstance(ppo, PPOConfig)
        env = None
        if plan.mode in ("rollout", "mixed"):
            env = TownTrainEnv(plan.config, ppo.num_envs, plan.seed, ppo.episode_ticks)
        torch.manual_seed(plan.seed)
        policy = make_policy(meta, int(meta["obs_dim"]), len(meta["action_names"]), ppo.hidden)
        load_weights(policy, plan.warm, notify)
        trainer = Trainer(
            env,
            ppo,
            seed=plan.seed,
            policy=policy,
            # Replayed rows get values and advantages from the critic as it learns (every epoch).
            replay=(lambda net: replay.dataset(net, ppo.gamma, ppo.gae_lambda)) if replay is not None else None,
            replay_baseline=replay.baseline() if replay else None,
            replay_events=replay.events if replay else None,
            obs_meta=meta,
        )
        blend = attach_blend(
            trainer, blend_ratio(plan.mode, plan.config.sections.training.anneal_ratio, plan.anneal_ratio)
        )
        start = start_epoch(trainer, plan.warm, self.name, plan.epochs, notify)
        writer = plan.log.open(start, extra=blend) if plan.log is not None else None
        saver = phase_saver(plan, self.name, mode=True)
        return run_saving(trainer, plan, saver, writer, on_epoch, start, data_mode=plan.mode)


PPO = PPOPhase()
