"""The papers' tables: the tables as data, each run's commands and outputs, the hydra configs and shell scripts."""
