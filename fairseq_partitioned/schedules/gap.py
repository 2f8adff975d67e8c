"""Which layers a GaP run holds dense at a point of training (Ma et al., ICLR 2022, Algorithms 1-2).

C-GaP (Algorithm 1): K steps of T epochs (or N updates); step k grows partition k mod kappa
(``--gap-partition-strategy cyclic``) or a random subset of the same size (``random``, appendix A.2);
after K steps nothing is dense and the model is fine-tuned with fixed masks. A P-GaP worker grows one
fixed partition for its whole run; fixed-mask training grows nothing.

Pure: a function of the epoch (or update) number and the seed, so a resumed run picks up the same
step and the same partition. ``None`` means "no step": nothing is dense.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence

from ..pruning import cyclic_partition, random_partition


@dataclass(frozen=True)
class GapSchedule:
    partitions: Sequence[Sequence[str]]  # the kappa partitions, as prunable weight names
    steps: int = 0  # K; 0: no grow-and-prune (fixed masks, or a P-GaP worker)
    step_epochs: int = 0  # T
    step_updates: int = 0  # N (used when step_epochs is 0)
    strategy: str = "cyclic"
    seed: int = 1
    grow_partition: int = -1  # a P-GaP worker: always this partition

    def step_at(self, epoch: int, num_updates: int) -> Optional[int]:
        """The C-GaP step that update ``num_updates`` (0-based), in ``epoch`` (1-based), belongs to."""
        if self.steps <= 0:
            return None
        step = (epoch - 1) // self.step_epochs if self.step_epochs > 0 else num_updates // self.step_updates
        return step if step < self.steps else None

    def dense_at(self, step: Optional[int]) -> List[str]:
        """The prunable weights held dense during ``step``."""
        if self.grow_partition >= 0:
            return list(self.partitions[self.grow_partition])
        if step is None:
            return []
        if self.strategy == "random":
            return random_partition(step, self.partitions, self.seed)
        return list(self.partitions[cyclic_partition(step, len(self.partitions))])
