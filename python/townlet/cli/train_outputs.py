"""What `townlet train` writes beside the checkpoint: the candidate in the shadow folder (docs/promotion.md) and,
with `--tensorboard DIR`, TensorBoard event files of the epoch records."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from townlet.errors import UsageError
from townlet.ops.promotion_policy import candidate_target
from townlet.paths import check_output
from townlet.sim.config import TownConfig

if TYPE_CHECKING:
    from townlet.training.request import RunOutputs, TrainPlan


def shadow_target(config: TownConfig, save: Path, shadow_dir: Path | None, *, off: bool, given: bool) -> Path | None:
    """Where the run's checkpoint `save` is published as a promotion candidate (None with `--no-shadow`); refuses a
    checkpoint in the release folder (training writes candidates only; `promote_policy` installs releases)."""
    promotion = config.sections.ops.promotion
    release = Path(promotion.release_dir).resolve()
    option = "--warm-start-save" if given else "save_path"
    if save.resolve().is_relative_to(release):
        raise UsageError(
            f"{option} {save}: in the release folder {promotion.release_dir} (ops.promotion.release_dir); training "
            f"writes candidates to the shadow folder only, promote_policy installs a release"
        )
    if off:
        return None
    folder = shadow_dir if shadow_dir is not None else Path(promotion.shadow_dir)
    key = "--shadow-dir" if shadow_dir is not None else "ops.promotion.shadow_dir"
    if folder.resolve() == release or folder.resolve().is_relative_to(release):
        raise UsageError(f"{key} {folder}: the release folder {promotion.release_dir}; candidates go elsewhere")
    target = candidate_target(save, folder, config.config_id)
    check_output(target, key)
    return target


def run_logged(
    plan: TrainPlan,
    on_epoch: Callable[[dict[str, Any]], None],
    tensorboard: Path | None,
    notice: Callable[[str], None],
) -> RunOutputs:
    """`training.run.run`, each epoch's record also written to TensorBoard when a folder is given."""
    from townlet.training.run import run  # torch: only a training run pays for it

    if tensorboard is None:
        return run(plan, on_epoch=on_epoch, on_notice=notice)
    from townlet.training.tensorboard import TensorBoardLog

    board = TensorBoardLog(tensorboard)

    def both(record: dict[str, Any]) -> None:
        on_epoch(record)
        board.write(record)

    try:
        return run(plan, on_epoch=both, on_notice=notice)
    finally:
        board.close()
