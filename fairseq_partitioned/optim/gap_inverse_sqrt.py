"""``--lr-scheduler gap_inverse_sqrt``: fairseq's inverse_sqrt, restarted at every GaP step.

GaP appendix B: "Identical hyper-parameters are applied to each GaP step and the final fine-tune
stage. For example, the initial learning rate of each step is restored to the same value." So the
warm-up and decay of inverse_sqrt run on the updates since the current step (or the fine-tune) began.
The update at which the current step began is part of the scheduler's state in the checkpoint.
"""
from dataclasses import dataclass

from fairseq.optim.lr_scheduler import register_lr_scheduler
from fairseq.optim.lr_scheduler.inverse_square_root_schedule import (
    InverseSquareRootLRScheduleConfig,
    InverseSquareRootSchedule,
)
from omegaconf import II

from ..schedules.gap import stage_at


@dataclass
class GapInverseSqrtConfig(InverseSquareRootLRScheduleConfig):
    gap_steps: int = II("task.gap_steps")
    gap_step_epochs: int = II("task.gap_step_epochs")
    gap_step_updates: int = II("task.gap_step_updates")


@register_lr_scheduler("gap_inverse_sqrt", dataclass=GapInverseSqrtConfig)
class GapInverseSqrtSchedule(InverseSquareRootSchedule):
    def __init__(self, cfg: GapInverseSqrtConfig, optimizer):
        super().__init__(cfg, optimizer)
        self.stage = 0  # 0..K-1: the GaP step; K: the fine-tune
        self.stage_start = 0  # the update at which the stage began
        self._epoch_stage = None

    def _stage_of_epoch(self, epoch: int) -> int:
        return stage_at(epoch, 0, self.cfg.gap_steps, self.cfg.gap_step_epochs, 0)

    def step_begin_epoch(self, epoch):
        if self.cfg.gap_step_epochs > 0:
            self._epoch_stage = self._stage_of_epoch(epoch)
        return self.optimizer.get_lr()

    def step_update(self, num_updates):
        if self.cfg.gap_step_epochs > 0:
            stage = self.stage if self._epoch_stage is None else self._epoch_stage
            if stage != self.stage:  # the first update of a new stage (a resumed stage keeps its start)
                self.stage, self.stage_start = stage, num_updates
        elif self.cfg.gap_step_updates > 0:
            self.stage = stage_at(1, num_updates, self.cfg.gap_steps, 0, self.cfg.gap_step_updates)
            self.stage_start = self.stage * self.cfg.gap_step_updates
        return super().step_update(num_updates - self.stage_start)

    def state_dict(self):
        return {**super().state_dict(), "gap_stage": self.stage, "gap_stage_start": self.stage_start}

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self.stage = state_dict.get("gap_stage", 0)
        self.stage_start = state_dict.get("gap_stage_start", 0)
