"""Which method a run trains, decided in one place (as ``translation_moe`` turns its ``--method`` into
one code path): ``--gap-sparsity S > 0`` trains a sparse Transformer with GaP (``GrowAndPrune``);
otherwise the run trains a partitioned model (``AlternatingTraining``: ATS with ``--alternate``,
standard training of the model or of its core without)."""


def is_gap(cfg) -> bool:
    """Whether the run with task config ``cfg`` trains GaP (else ATS)."""
    return cfg.gap_sparsity > 0
