"""Which layers a GaP run holds dense at a point of training (Ma et al., ICLR 2022, Algorithms 1-2).

C-GaP (Algorithm 1): K steps of T epochs (or N updates); step k grows partition k mod kappa
(``--gap-partition-strategy cyclic``) or ``len(matrices) // kappa`` matrices drawn at random, not those
of step k-1 (``random``, appendix A.2, as the official code draws them); after K steps nothing is
dense and the model is fine-tuned with fixed masks. A single-step run grows one set for its whole
run: a P-GaP worker its partition (``--gap-grow-partition i``), or one step of a C-GaP run split into
processes as the official code runs it (``--gap-grow-step k``: what step k grows). Fixed-mask training
grows nothing.

Pure: a function of the epoch (or update) number and the seed, so a resumed run picks up the same
step and the same partition. ``None`` means "no step": nothing is dense.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence

from ..pruning import cyclic_partition, random_partition

SINGLE_STEP = -1  # the step of a single-step run (a P-GaP worker, or --gap-grow-step)


def stage_at(epoch: int, num_updates: int, steps: int, step_epochs: int, step_updates: int) -> int:
    """The C-GaP stage that update ``num_updates`` (0-based), in ``epoch`` (1-based), belongs to: step
    0..K-1 (K = ``steps``) of T = ``step_epochs`` epochs, or of N = ``step_updates`` updates when T is 0;
    K is the fine-tune. The one place this is computed (the masks' schedule and the learning rate's)."""
    step = (epoch - 1) // step_epochs if step_epochs > 0 else num_updates // step_updates
    return min(step, steps)


@dataclass(frozen=True)
class GapSchedule:
    partitions: Sequence[Sequence[str]]  # the kappa partitions, as prunable weight names
    steps: int = 0  # K; 0: no grow-and-prune (fixed masks, or a single-step run)
    step_epochs: int = 0  # T
    step_updates: int = 0  # N (used when step_epochs is 0)
    strategy: str = "cyclic"
    seed: int = 1
    grow_partition: int = -1  # a P-GaP worker: always this partition
    grow_step: int = -1  # one step of C-GaP as its own run: always what step k grows

    def step_at(self, epoch: int, num_updates: int) -> Optional[int]:
        """The C-GaP step that update ``num_updates`` (0-based), in ``epoch`` (1-based), belongs to."""
        if self.grow_partition >= 0 or self.grow_step >= 0:
            return SINGLE_STEP
        if self.steps <= 0:
            return None
        stage = stage_at(epoch, num_updates, self.steps, self.step_epochs, self.step_updates)
        return stage if stage < self.steps else None

    def dense_at(self, step: Optional[int]) -> List[str]:
        """The prunable weights held dense during ``step``."""
        if step is None:
            return []
        if step == SINGLE_STEP:
            return list(self.partitions[self.grow_partition]) if self.grow_partition >= 0 else self.grown_by(self.grow_step)
        return self.grown_by(step)

    def grown_by(self, step: int) -> List[str]:
        """What C-GaP step ``step`` grows (Algorithm 1 line 5, or the random draw of A.2)."""
        if self.strategy == "random":
            return random_partition(step, [n for p in self.partitions for n in p], len(self.partitions), self.seed)
        return list(self.partitions[cyclic_partition(step, len(self.partitions))])

    @property
    def first_grown(self) -> List[str]:
        """What a run from scratch grows first."""
        return self.dense_at(self.step_at(1, 0))
