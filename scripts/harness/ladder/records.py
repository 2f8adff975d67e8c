"""A ladder run's numbers, read from its directory or from its record: the record is small, to be committed.

A run is one directory, OUTPUT/RUN/seedN/ (RUN: dense, prune-D, cgap-D, prune-matched-D, random-mask,
cgap-125-steps and the study's cgap; scripts/gap_ladder.py). Its numbers (``numbers``):

- ``trainings``: per training log (RUN/seedN/LOG.log: train, train-stepK, finetuneK, finetune), the valid loss of
  every validation as [update, loss] (the training's own update count; bits per token, label-smoothed, as
  fairseq-train's JSON log has it), its wall time summed over its invocations and their number
  (``fairseq_log.wall_seconds``: a chained or resumed training restarts fairseq's own clock), and the updates of
  its first epoch (None if it never ended one);
- ``test_bleu``: per test translation (generate-NAME.txt: NAME), its BLEU (the study's: tokenized, beam 4);
- ``steps``: a C-GaP run's steps, once they are all done (harness/ladder/steps.py, kept in its steps.json).

Its record (``record``; ``--write-records DIR`` writes it as DIR/RUN/seedN.json with ``runs.write_record``) adds
what trained it: the commands that are done, as ``--dry-run`` prints them (OUTPUT for the output directory), the
commit, and the wall time of all its trainings. ``Runs`` gives the report each number from the run's directory, or
from the run's record where the directory does not hold it (a run whose directory is gone): the same numbers
either way. Importing this module needs neither fairseq nor torch.
"""
import glob
import os
from typing import Dict, List, Optional, Tuple

from harness import bleu as bleu_conventions, fairseq_log, runs
from harness.ladder.steps import analyse as analyse_steps
from harness.recipe import ROOT
from harness.runner import Job
from harness.study import design as study

LANG = study.TGT
NOT_TRAININGS = ("prune.log",)  # the logs in a run directory that are not fairseq-train's


def steps_done(d: str) -> bool:
    logs = glob.glob(os.path.join(d, "train-step*.log"))
    return bool(logs) and all(glob.glob(runs.marker(log) + "*") for log in logs)  # a marker of any length


def per_step(d: str, data: str) -> List[dict]:
    """analyse_steps of a C-GaP run once its steps are done, measured once (steps.json)."""
    cached = os.path.join(d, "steps.json")
    if os.path.isfile(cached):
        return runs.read_record(cached, default=[])
    if not steps_done(d):
        return []
    rows = analyse_steps(d, data)
    runs.write_record(cached, rows)
    return rows


def numbers(d: str, data: str) -> dict:
    """The numbers of the run in directory ``d`` (empty where it has none)."""
    trainings, test_bleu = {}, {}
    for log in sorted(glob.glob(os.path.join(d, "*.log"))):
        if os.path.basename(log) in NOT_TRAININGS:
            continue
        with open(log, errors="replace") as f:
            wall, invocations = fairseq_log.wall_seconds(f)
        trainings[os.path.basename(log)[:-len(".log")]] = {
            "valid_loss": [list(p) for p in fairseq_log.valid_losses(log)], "wall_seconds": wall,
            "invocations": invocations, "updates_per_epoch": fairseq_log.updates_per_epoch(log)}
    for path in sorted(glob.glob(os.path.join(d, "generate-*.txt"))):
        scored = bleu_conventions.score(path, "tokenized", LANG)
        if scored is not None:
            test_bleu[os.path.basename(path)[len("generate-"):-len(".txt")]] = scored.bleu
    return {"trainings": trainings, "test_bleu": test_bleu, "steps": per_step(d, data) if os.path.isdir(d) else []}


def _shown(text: str, output: str) -> str:
    """A command or path with the output directory as OUTPUT and the checkout's paths relative to it."""
    return text.replace(output, "OUTPUT").replace(ROOT + os.sep, "")


def record(output: str, run: str, seed: int, done: List[Job], commit: str) -> dict:
    """The record of a run of ``output``: its numbers and ``done``, the jobs of it that are done."""
    found = numbers(runs.run_dir(output, run, seed), os.path.join(output, "data-bin"))
    walls = [t["wall_seconds"] for t in found["trainings"].values() if t["wall_seconds"] is not None]
    return {"run": run, "seed": seed, "commit": commit,
            "commands": [_shown(f"python {' '.join(j.argv)} > {j.log}", output) for j in done],
            "training_wall_seconds": sum(walls) if walls else None, **found}


def run_of(job: Job) -> Tuple[str, int]:
    """The run a job belongs to, from its name (RUN/seedN/what)."""
    run, seed = job.name.split("/")[:2]
    return run, int(seed[len("seed"):])


def write(output: str, chosen: List[Job], every: List[Job], directory: str, commit: str) -> Tuple[List[str], List[str]]:
    """DIRECTORY/RUN/seedN.json for every run of the ``chosen`` jobs whose chosen jobs are all done, with the
    commands of ``every`` job of the run that is done; and the runs not complete yet (RUN/seedN)."""
    by_run: Dict[Tuple[str, int], List[Job]] = {}
    for job in chosen:
        by_run.setdefault(run_of(job), []).append(job)
    written, incomplete = [], []
    for (run, seed), jobs in by_run.items():
        if not all(j.done for j in jobs):
            incomplete.append(f"{run}/seed{seed}")
            continue
        done = [j for j in every if run_of(j) == (run, seed) and j.done]
        path = os.path.join(directory, run, f"seed{seed}.json")
        runs.write_record(path, record(output, run, seed, done, commit))
        written.append(path)
    return written, incomplete


def read(directory: str) -> Dict[Tuple[str, int], Tuple[str, dict]]:
    """(RUN, seed) -> (path, record) of every record under DIRECTORY; ValueError names the first that is not one."""
    found = {}
    for path in sorted(glob.glob(os.path.join(directory, "*", "seed*.json"))):
        rec = runs.read_record(path)
        try:
            key = (str(rec["run"]), int(rec["seed"]))
            if not (isinstance(rec["trainings"], dict) and isinstance(rec["test_bleu"], dict)
                    and isinstance(rec.get("steps", []), list)) or key[0] != os.path.basename(os.path.dirname(path)):
                raise ValueError
        except (KeyError, ValueError, TypeError):
            raise ValueError(f"{path} is not a ladder run's record") from None
        found[key] = (path, rec)
    if not found:
        raise ValueError("no ladder run's record in it (RUN/seedN.json)")
    return found


class Runs:
    """The numbers of the runs of one seed: each from the run's directory in OUTPUT, else from its record.
    Each getter returns the number (None: neither has it) and where it came from (None: the directory)."""

    def __init__(self, output: str, seed: int, recorded: Dict[Tuple[str, int], Tuple[str, dict]]):
        self.output, self.seed, self.recorded = output, seed, recorded
        self._numbers: Dict[str, dict] = {}

    def _get(self, run: str, pick):
        if run not in self._numbers:
            self._numbers[run] = numbers(runs.run_dir(self.output, run, self.seed),
                                         os.path.join(self.output, "data-bin"))
        value = pick(self._numbers[run])
        if value not in (None, []) or (run, self.seed) not in self.recorded:
            return value, None
        path, rec = self.recorded[(run, self.seed)]
        value = pick(rec)
        return value, (f"the record {path}, trained at {rec.get('commit')}" if value not in (None, []) else None)

    def bleu(self, run: str, name: str) -> Tuple[Optional[float], Optional[str]]:
        return self._get(run, lambda n: n["test_bleu"].get(name))

    def curve(self, run: str, log: str) -> Tuple[List[Tuple[int, float]], Optional[str]]:
        """(update, valid loss) of every validation of the training ``log`` (RUN/seedN/LOG.log)."""
        points, source = self._get(run, lambda n: (n["trainings"].get(log) or {}).get("valid_loss"))
        return [tuple(p) for p in points or []], source

    def valid_at(self, run: str, log: str, updates: int) -> Tuple[Optional[float], Optional[str]]:
        points, source = self.curve(run, log)
        value = dict(points).get(updates)
        return value, source if value is not None else None

    def updates_per_epoch(self, run: str, log: str) -> Optional[int]:
        return self._get(run, lambda n: (n["trainings"].get(log) or {}).get("updates_per_epoch"))[0]

    def logs(self, run: str) -> List[str]:
        """The names of a run's training logs (LOG of RUN/seedN/LOG.log)."""
        return list(self._get(run, lambda n: n["trainings"] or None)[0] or {})

    def steps(self, run: str) -> Tuple[List[dict], Optional[str]]:
        return self._get(run, lambda n: n.get("steps") or [])
