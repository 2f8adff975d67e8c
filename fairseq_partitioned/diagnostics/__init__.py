from .gradient_alignment import alignment_quantities, measure_alignment  # noqa: F401
