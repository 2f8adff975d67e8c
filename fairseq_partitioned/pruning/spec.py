"""How a GaP model is pruned: its ``PruningSpec``, built and validated in one place.

GaP's pruning options (Ma et al., ICLR 2022, section 3 and appendix A.3) are the target sparsity S, the
distribution of S over the matrices, the granularity of one pruning decision, how a block scores, and
which weights are prunable. They arrive as flags (``--gap-*`` of the task and of
fairseq-partitioned-pgap, ``--sparsity`` ... of fairseq-partitioned-prune), are checked here once,
and travel as one frozen ``PruningSpec`` to the method, the pruning functions and the console scripts.
An error names the flag that set the option (``flags``).
"""
from dataclasses import dataclass, field
from typing import Iterable, List, Optional

from ..config import config_value
from ..errors import UsageError
from .granularity import BLOCK_SCORES, DISTRIBUTIONS, Granularity, parse_granularity
from .partitions import prunable_names


@dataclass(frozen=True)
class PruningFlags:
    """The flags that set each option, named in its errors."""

    sparsity: str = "--gap-sparsity"
    distribution: str = "--gap-distribution"
    granularity: str = "--gap-granularity"
    block_score: str = "--gap-block-score"
    prunable: str = "--gap-prunable"


GAP_FLAGS = PruningFlags()  # the task's (and fairseq-partitioned-pgap's)


@dataclass(frozen=True)
class PruningSpec:
    sparsity: float  # S in [0, 1)
    distribution: str = "uniform"  # S in every matrix, or S overall by one magnitude threshold
    granularity: Granularity = Granularity("unstructured")
    block_score: str = "l1"  # a 1xB block's magnitude: sum of |w| (l1) or of w^2 (l2)
    prunable: Optional[str] = None  # regex over parameter names (None: partitions.DEFAULT_PRUNABLE)
    flags: PruningFlags = field(default=GAP_FLAGS, compare=False, repr=False)

    @classmethod
    def of(cls, sparsity: float, distribution: str = "uniform", granularity: str = "unstructured",
           block_score: str = "l1", prunable: Optional[str] = None, flags: PruningFlags = GAP_FLAGS) -> "PruningSpec":
        """The spec of these options, each checked (one-line errors naming ``flags``)."""
        if not 0.0 <= sparsity < 1.0:
            raise UsageError(f"{flags.sparsity} must be in [0, 1), got {sparsity}")
        if distribution not in DISTRIBUTIONS:
            raise UsageError(f"{flags.distribution} must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}")
        gran = parse_granularity(granularity, flags.granularity)
        if gran.is_n_of_m:
            if abs(sparsity - gran.n_of_m_sparsity) > 1e-9:
                raise UsageError(
                    f"{flags.granularity} {gran.text} keeps {gran.keep} of every {gran.group} weights, so it "
                    f"needs {flags.sparsity} {gran.n_of_m_sparsity:g}, got {sparsity}"
                )
            if distribution != "uniform":
                raise UsageError(
                    f"{flags.granularity} {gran.text} is uniform by construction (the same pattern in every "
                    f"group of {gran.group}): use {flags.distribution} uniform, got {distribution!r}"
                )
        if block_score not in BLOCK_SCORES:
            raise UsageError(f"{flags.block_score} must be one of {', '.join(BLOCK_SCORES)}, got {block_score!r}")
        prunable_names([], prunable, flag=flags.prunable)  # a pattern that is not one
        return cls(float(sparsity), distribution, gran, block_score, prunable, flags)

    @classmethod
    def from_args(cls, args) -> "PruningSpec":
        """The spec of a run's ``--gap-*`` flags (the task's config, fairseq-partitioned-pgap's parsed
        flags, or a checkpoint's saved task config, whose older versions may lack some: defaults)."""
        prunable = config_value(args, "gap_prunable")
        return cls.of(
            float(config_value(args, "gap_sparsity", 0.0)), str(config_value(args, "gap_distribution", "uniform")),
            str(config_value(args, "gap_granularity", "unstructured")), str(config_value(args, "gap_block_score", "l1")),
            None if prunable is None else str(prunable),
        )

    def prunable_names(self, names: Iterable[str]) -> List[str]:
        """The names of ``names`` that are prunable, in order."""
        return prunable_names(names, self.prunable, flag=self.flags.prunable)

