"""The machinery of scripts/: what its commands share, and one package per family of commands.

Shared (import no family): console (errors, tables, mean and std), runner (jobs, one at a time or side by
side), runs (a run's folder, a step's marker, JSON records), recipe (fairseq command lines), fairseq_log (a
training log's records), bleu (the papers' BLEU conventions), plots, in_process (fairseq set up in this
process). Families: papers (the papers' tables: reproduce, collect_results, make_hydra_configs,
make_table_scripts), study (study, quickstart, deploy_benchmark), ladder (gap_ladder; it builds on the
study's recipe), bench (benchmark, deploy_benchmark; the benchmark trains with the papers' IWSLT14 recipe).
A command imports the harness, never another command (tests/test_layout.py). The commands run as
``python scripts/NAME.py``, which puts scripts/ first on the path: the harness is imported as ``harness``.
"""
