"""The GaP ladder's commands (scripts/gap_ladder.py): the paper's proportions at every rung, each C-GaP
step going on from the one before, the control on the study's schedule; and how a step continues;
prune-from-dense at C-GaP's budget with its second round, the arms chosen and what they need; the report
over seeds and from records (ladder.json files, the runs' own records), and a tiny ladder end to end."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch

import fairseq_helpers as h
from harness import runner
from harness.ladder import design as ladder, report as ladder_report, steps as ladder_steps
from harness.study.design import Budget

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _flag(job, flag):
    return job.argv[job.argv.index(flag) + 1]


def _ladder(tmp_path, rungs=(750, 3000, 6000)):
    return {j.name: j for j in ladder.jobs(str(tmp_path), "DATA", list(rungs), 1, Budget(1500), smoke=False)}


def test_every_rung_has_the_papers_proportions(tmp_path):
    jobs = _ladder(tmp_path)
    for dense in (750, 3000, 6000):
        n = dense // 4
        steps = [jobs[f"cgap-{dense}/seed1/step{k}"] for k in range(4)]
        assert [j.updates for j in steps] == [n] * 4
        assert [_flag(j, "--gap-grow-step") for j in steps] == ["0", "1", "2", "3"]
        finetune = jobs[f"cgap-{dense}/seed1/finetune1"]
        assert finetune.updates == dense and finetune.needs == [steps[3].name]
        assert _flag(finetune, "--finetune-from-model").endswith(os.path.join("step3", "checkpoint_last.pt"))
        assert jobs[f"prune-{dense}/seed1/train"].updates == dense  # prune-from-dense: D dense + D fine-tune
        assert jobs[f"dense/seed1/train-{dense}"].updates == dense
        assert jobs[f"random-mask/seed1/train-{2 * dense}"].updates == 2 * dense
        assert 4 * n + dense <= 2 * dense <= 4 * n + dense + 2  # C-GaP's first branch: prune-from-dense's budget
    # the paper's extra budget at the longest rung only: a second round, and its fine-tune
    assert jobs["cgap-6000/seed1/finetune2"].needs == ["cgap-6000/seed1/step6"]
    assert "cgap-3000/seed1/step4" not in jobs and "cgap-750/seed1/finetune2" not in jobs
    # the learning rate's warm-up is the study's share of a step
    assert [_flag(jobs[f"cgap-{d}/seed1/step1"], "--warmup-updates") for d in (750, 3000, 6000)] == ["19", "75", "150"]


def test_a_step_goes_on_from_the_step_before_with_its_data_order(tmp_path):
    jobs = _ladder(tmp_path, (750,))
    step0, step1 = jobs["cgap-750/seed1/step0"], jobs["cgap-750/seed1/step1"]
    assert not any(a.startswith(runner.CONTINUE_FROM) for a in step0.argv)  # from scratch
    save0, save1 = _flag(step0, "--save-dir"), _flag(step1, "--save-dir")
    # before its own first checkpoint: the step before's, with a fresh optimizer and schedule, not a fresh data order
    argv = runner.resolve(step1.argv)
    i = argv.index("--restore-file")
    assert argv[i:i + 5] == ["--restore-file", os.path.join(save0, "checkpoint_last.pt"), "--reset-optimizer",
                             "--reset-lr-scheduler", "--reset-meters"]
    assert "--reset-dataloader" not in argv and "--finetune-from-model" not in argv
    # relaunched after its own first checkpoint: it resumes from that
    os.makedirs(save1)
    open(os.path.join(save1, "checkpoint_last.pt"), "w").close()
    argv = runner.resolve(step1.argv)
    assert "--restore-file" not in argv and "--reset-optimizer" not in argv


def test_the_control_is_the_studys_schedule_as_processes(tmp_path):
    jobs = _ladder(tmp_path, (750,))
    one_process = jobs["cgap/seed1/train"]
    assert (_flag(one_process, "--gap-steps"), _flag(one_process, "--gap-step-updates"),
            _flag(one_process, "--gap-finetune-updates")) == ("9", "125", "375")
    steps = [jobs[f"cgap-125-steps/seed1/step{k}"] for k in range(9)]
    assert [j.updates for j in steps] == [125] * 9
    finetune = jobs["cgap-125-steps/seed1/finetune"]
    assert finetune.updates == 375 and finetune.needs == [steps[-1].name]
    warmups = {_flag(j, "--warmup-updates") for j in [one_process, *steps, finetune]}
    assert warmups == {"12"}  # the same learning rate at every update: only the optimizer state differs
    assert any(a.startswith(runner.CONTINUE_FROM) for a in finetune.argv)


def test_grown_share_counts_the_kept_weights_the_step_grew():
    before = {"a": torch.tensor([True, False, False, False]), "b": torch.tensor([False, True])}
    new = {"a": torch.tensor([True, True, False, True]), "b": torch.tensor([True, False])}
    assert ladder_steps.grown_share(new, before) == 3 / 4  # a: 2 of 3 kept were grown; b: 1 of 1


def test_the_steps_of_a_run_in_processes_are_measured_as_its_validation_saw_them(data_dir, tmp_path):
    """Two C-GaP steps as processes, the second going on from the first, as the ladder runs them: the
    valid loss at S of each step's checkpoint is what fairseq-train's validation logged at its end, the
    grown partition dense is another model, and step 0's share is measured against the initial masks."""
    import json
    import logging

    flags = ["--gap-sparsity", "0.75", "--gap-partitions", "2", "--max-update", "6", "--max-epoch", "0",
             "--log-format", "json", "--lr", "0.02"]
    logs = []
    for step in range(2):
        save = str(tmp_path / "checkpoints" / f"step{step}")
        extra = [] if step == 0 else ["--restore-file", os.path.join(str(tmp_path / "checkpoints" / "step0"),
                                                                      "checkpoint_last.pt"),
                                      "--reset-optimizer", "--reset-lr-scheduler", "--reset-meters"]
        log = tmp_path / f"step{step}.log"

        # fairseq logs validation at INFO; the root logger's level depends on what ran before in this
        # process (the export's main, run in-process by other tests, sets it to WARNING), so set it here.
        root = logging.getLogger()
        handler, level = logging.FileHandler(log), root.level
        handler.setLevel(logging.INFO)
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            h.train_translation_model(data_dir, flags + ["--gap-grow-step", str(step)] + extra, save_dir=save)
        finally:
            root.removeHandler(handler)
            root.setLevel(level)
            handler.close()
        logs.append(log)
    rows = ladder_steps.analyse(str(tmp_path), data_dir)
    assert [r["step"] for r in rows] == [0, 1]
    for row, log in zip(rows, logs):
        logged = [json.loads(line[line.index("{"):]) for line in open(log) if '"valid_loss"' in line]
        assert abs(row["valid_at_s"] - float(logged[-1]["valid_loss"])) < 1e-3
        assert row["valid_dense"] != row["valid_at_s"]
        assert 0 < row["grown_share"] < 1


def test_the_report_of_a_ladder_not_started_has_every_row_and_no_number(tmp_path):
    paths = ladder_report.write(str(tmp_path), [750, 3000], Budget(1500).cgap(), 1500)
    report = open(paths[0]).read()
    rows = [line for line in report.splitlines() if line.startswith(("| 750 |", "| 3000 |"))]
    assert len(rows) == 2 and all(set(cell.strip()) <= set("-") for row in rows for cell in row.split("|")[3:-1])
    assert "9 steps of 125 updates, a 375-update fine-tune" in report
    assert os.path.getsize(paths[1]) > 0


def test_a_training_scored_at_an_update_between_save_intervals_is_found_in_checkpoint_last(tmp_path):
    """The control's fine-tune trains 375 updates, saved every 250: fairseq writes checkpoint_3_250.pt
    and, at its end, only checkpoint_last.pt. Its test job is scored at 375 from checkpoint_last.pt;
    at an update no checkpoint holds, the job stops with the runner's error."""
    jobs = _ladder(tmp_path, rungs=(750,))
    finetune, test = jobs["cgap-125-steps/seed1/finetune"], jobs["cgap-125-steps/seed1/test-sparse-finetune"]
    assert finetune.updates == 375 and int(_flag(finetune, "--save-interval-updates")) == 250
    ckpt_dir = _flag(finetune, "--save-dir")
    os.makedirs(ckpt_dir)
    for name, updates in (("checkpoint_3_250.pt", 250), ("checkpoint_last.pt", 375)):
        torch.save({"optimizer_history": [{"num_updates": updates}]}, os.path.join(ckpt_dir, name))
    argv = runner.resolve(test.argv)
    assert os.path.join(ckpt_dir, "checkpoint_last.pt") in argv
    torch.save({"optimizer_history": [{"num_updates": 400}]}, os.path.join(ckpt_dir, "checkpoint_last.pt"))
    with pytest.raises(FileNotFoundError, match="no checkpoint at update 375"):
        runner.resolve(test.argv)


def _record(tmp_path, rungs=(750, 3000)):
    """A ladder.json as the report writes one, of a ladder with a valid loss at D in each prune-from-dense run."""
    output = tmp_path / "measured"
    for dense in rungs:
        log = output / f"prune-{dense}" / "seed1" / "train.log"
        log.parent.mkdir(parents=True)
        log.write_text('| valid | {"epoch": 2, "valid_loss": "%.3f", "valid_num_updates": "%d"}\n'
                       % (5 + dense / 1e4, dense))
    paths = ladder_report.write(str(output), list(rungs), Budget(1500).cgap(), 1500)
    return output, paths[1]


def test_the_report_takes_the_rungs_without_runs_from_a_record_and_marks_them(tmp_path):
    import json

    measured, record = _record(tmp_path)
    assert json.load(open(record))["rungs"]["3000"]["prune"] == [None, 5.3]
    # a ladder of the longest rung alone, its prune-from-dense at 6,000 measured; 750 and 3000 from the record
    output, _ = _record(tmp_path / "later", rungs=(6000,))
    paths = ladder_report.write(str(output), [6000], Budget(1500).cgap(), 1500, [record])
    report = open(paths[0]).read()
    rows = {line.split("|")[1].strip(): line for line in report.splitlines() if line.startswith("| ")}
    assert "- / 5.075" in rows["750*"] and "- / 5.300" in rows["3000*"] and "- / 5.600" in rows["6000"]
    assert f"From the record {record}" in report and "measured in measured/, report of" in report
    # the merged ladder.json is itself a record: every rung with its source
    merged = ladder_report.load_record(paths[1])[1]  # seed 1's
    assert list(merged["rungs"]) == ["750", "3000", "6000"]
    assert merged["rungs"]["750"]["source"] == ladder_report.load_record(record)[1]["rungs"]["750"]["source"]
    assert merged["rungs"]["6000"]["source"].startswith(f"measured in {output.name}/")


def test_a_measured_rung_is_not_replaced_by_the_record(tmp_path):
    _, record = _record(tmp_path)
    output, _ = _record(tmp_path / "again", rungs=(3000,))
    with open(output / "prune-3000" / "seed1" / "train.log", "w") as f:
        f.write('| valid | {"epoch": 6, "valid_loss": "4.000", "valid_num_updates": "3000"}\n')
    report = open(ladder_report.write(str(output), [3000], Budget(1500).cgap(), 1500, [record])[0]).read()
    assert "| 3000 |" in report and "- / 4.000" in report and "| 750* |" in report and "5.300" not in report


def test_a_rung_measured_in_part_takes_the_networks_it_lacks_from_the_record(tmp_path):
    import json

    # the record: rung 3000's prune-from-dense (valid 5.300) and its steps
    _, record = _record(tmp_path)
    rec = json.load(open(record))
    rec["by_seed"]["1"]["rungs"]["3000"]["steps"] = [{"step": 0, "matrices": 12, "grown_share": 0.9,
                                                      "valid_dense": 7.0, "valid_at_s": 7.5, "lost": 0.5}]
    json.dump(rec, open(record, "w"))
    # a ladder of rung 3000 again whose C-GaP fine-tune is measured, its prune-from-dense run gone
    output = tmp_path / "again"
    log = output / "cgap-3000" / "seed1" / "finetune1.log"
    log.parent.mkdir(parents=True)
    log.write_text('| valid | {"epoch": 6, "valid_loss": "5.100", "valid_num_updates": "3000"}\n')
    paths = ladder_report.write(str(output), [3000], Budget(1500).cgap(), 1500, [record])
    report = open(paths[0]).read()
    row = next(line for line in report.splitlines() if line.startswith("| 3000 "))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[3:6] == ["- / 5.300*", "- / 5.100", "- / -0.200"]  # prune from the record, marked; C-GaP measured
    assert cells[2] == "-" and "C-GaP, D = 3000* (N = 750)" in report  # the steps from the record, marked
    assert "D = 3000's prune-from-dense, the steps" in report
    merged = ladder_report.load_record(paths[1])[1]["rungs"]["3000"]
    source = rec["by_seed"]["1"]["rungs"]["3000"]["source"]
    assert merged["recorded"] == [{"cells": ["prune", "steps"], "source": source}]
    assert merged["source"].startswith("measured in again/")
    # the merged record, recorded again, keeps where each cell was measured
    later = tmp_path / "later"
    later.mkdir()
    again = ladder_report.write(str(later), [3000], Budget(1500).cgap(), 1500, [paths[1]])
    assert ladder_report.load_record(again[1])[1]["rungs"]["3000"]["recorded"] == merged["recorded"]
    assert "D = 3000's prune-from-dense, the steps" in open(again[0]).read()


def test_a_record_that_is_not_one_stops_the_ladder_before_it_starts(tmp_path):
    bad = tmp_path / "bad.json"
    for broken in ({"source": "s", "recorded": [{"cells": ["dense"]}]},
                   {"source": "s", "recorded": [{"source": "s", "cells": ["dense", "bleu"]}]},
                   {"source": "s", "recorded": [{"source": "s"}]}):
        bad.write_text(json.dumps({"rungs": {"750": broken}, "control": {"source": "s"}}))
        with pytest.raises(ValueError, match="not a ladder record"):
            ladder_report.load_record(str(bad))
    bad.write_text('{"rungs": {"750": {"dense": [1, 2]}}}')
    with pytest.raises(ValueError, match="not a ladder record"):
        ladder_report.load_record(str(bad))
    for path in (str(bad), str(tmp_path / "missing.json")):
        with pytest.raises(SystemExit, match=r"^gap-ladder: error: --recorded .*: not a ladder record"):
            h.command("gap_ladder").main(["--output-dir", str(tmp_path / "ladder"), "--recorded", path])
    assert not (tmp_path / "ladder").exists()  # nothing prepared, nothing trained


def test_the_repositorys_record_holds_the_measured_rungs():
    record = ladder_report.load_record(os.path.join(ROOT, "docs", "gap-ladder.json"))[1]
    assert sorted(record["rungs"], key=int) == ["750", "3000", "6000"]
    assert [len(r["steps"]) for r in record["rungs"].values()] == [4, 4, 7]


def test_the_repositorys_record_alone_rebuilds_the_ladders_table_in_the_evidence(tmp_path):
    """docs/gap-ladder.json, whose run directories are gone, gives the table of docs/evidence.md in an empty
    output directory: every number, each rung marked as taken from the record."""
    record = os.path.join(ROOT, "docs", "gap-ladder.json")
    paths = ladder_report.write(str(tmp_path), [750, 3000, 6000], Budget(1500).cgap(), 1500, [record])
    rows = lambda text, mark: {line.split(" | ")[0].strip("| "): [c.strip() for c in line.split("|")[2:-1]]  # noqa
                               for line in text.splitlines() if re.match(rf"\| \d+{mark} \| \d+ \(", line)}
    with open(os.path.join(ROOT, "docs", "evidence.md")) as f:
        evidence = rows(f.read().split("### The third rung")[1], "")
    rebuilt = rows(open(paths[0]).read(), r"\*")
    assert list(rebuilt) == ["750*", "3000*", "6000*"]
    numbers = [(cell, theirs) for d in ("750", "3000", "6000") for cell, theirs in zip(rebuilt[d + "*"], evidence[d])
               if re.fullmatch(r"[-+\d.]+ / [-+\d.]+", theirs)]
    assert len(numbers) == 16 and all(cell == theirs for cell, theirs in numbers), numbers
    assert os.path.getsize(paths[2]) > 0


# ------------------------------------------------------------------ prune-from-dense at C-GaP's budget, --arms
def test_prune_from_dense_at_c_gaps_budget_with_its_second_round_is_split_two_ways(tmp_path):
    """At the longest rung, C-GaP's seven steps and second fine-tune (D = 6,000: 16,500 updates) against
    prune-from-dense given as many: half dense (the dense run trained on) and half fine-tune; and the rung's
    dense checkpoint at D with the rest as fine-tune (its prune-from-dense trained on). From the jobs alone."""
    for rungs in ((750, 3000, 6000), (3000,)):
        jobs, longest = _ladder(tmp_path, rungs), rungs[-1]
        cgap = sum(jobs[f"cgap-{longest}/seed1/step{k}"].updates for k in range(7))
        cgap += jobs[f"cgap-{longest}/seed1/finetune2"].updates
        assert cgap == ladder.matched_budget(longest) == {6000: 16500, 3000: 8250}[longest]
        # half and half: the dense run trained on to the half, pruned there, fine-tuned the rest
        dense_on = jobs[f"dense/seed1/train-{cgap // 2}"]
        assert dense_on.needs == [f"dense/seed1/train-{longest}"] and _flag(dense_on, "--max-update") == str(cgap // 2)
        prune = jobs[f"prune-matched-{longest}/seed1/prune"]
        assert prune.needs == [dense_on.name] and prune.argv[prune.argv.index("--sparsity") - 1].endswith(
            f"checkpoints:{cgap // 2}")
        half = jobs[f"prune-matched-{longest}/seed1/train"]
        assert half.updates == cgap - cgap // 2 and _flag(half, "--max-update") == str(half.updates)
        assert _flag(half, "--finetune-from-model") == _flag(prune, "--output")
        assert dense_on.updates + half.updates == cgap
        # D + the rest: the equal-budget prune-from-dense's own run, trained on (same log, checkpoints, start)
        equal, longer = jobs[f"prune-{longest}/seed1/train"], jobs[f"prune-{longest}/seed1/train-{cgap - longest}"]
        assert longest + longer.updates == cgap and longer.needs == [equal.name]
        at = equal.argv.index("--max-update") + 1
        assert longer.log == equal.log and longer.argv[at] == str(longer.updates)
        assert longer.argv[:at] + longer.argv[at + 1:] == equal.argv[:at] + equal.argv[at + 1:]  # but for its length
        assert jobs[f"prune-{longest}/seed1/test-sparse-{longer.updates}"].needs == [longer.name]
        # at the longest rung only
        assert not [n for n in jobs if n.startswith("prune-matched-") and not n.startswith(f"prune-matched-{longest}/")]
    assert ladder.matched_splits(6000) == ((8250, 8250), (6000, 10500))


def test_arms_choose_their_jobs_and_every_job_they_need(tmp_path):
    every = ladder.jobs(str(tmp_path), "DATA", [6000], 2, Budget(1500), smoke=False)
    assert ladder.jobs(str(tmp_path), "DATA", [6000], 2, Budget(1500), False, ladder.ARMS) == every
    # seed 2 of the claims: C-GaP with its second round and prune-from-dense at its budget, and what they need
    chosen = ladder.jobs(str(tmp_path), "DATA", [6000], 2, Budget(1500), False, ["cgap", "prune-matched"])
    names = [j.name for j in chosen]
    assert names == [j.name for j in every if j.name in set(names)]  # the ladder's order
    runs = {n.split("/")[0] for n in names}
    assert runs == {"cgap-6000", "prune-matched-6000", "dense", "prune-6000"}
    assert {n for n in names if n.startswith(("dense/", "prune-6000/"))} == {
        "dense/seed2/train-6000", "dense/seed2/train-8250", "dense/seed2/test-full-8250", "prune-6000/seed2/prune",
        "prune-6000/seed2/train", "prune-6000/seed2/train-10500", "prune-6000/seed2/test-sparse-10500"}
    assert all(n.startswith(f"{r}/seed2/") for n in names for r in [n.split("/")[0]])
    for i, job in enumerate(chosen):  # every job it needs is there, before it
        assert set(job.needs) <= set(names[:i]), job.name
    # one rung's arm, of a ladder of three
    assert {j.name.split("/")[0] for j in ladder.jobs(str(tmp_path), "DATA", [750, 3000, 6000], 1, Budget(1500),
                                                      False, ["cgap-3000"])} == {"cgap-3000"}
    pruned = ladder.jobs(str(tmp_path), "DATA", [750, 3000], 1, Budget(1500), False, ["prune-3000"])
    assert [j.name for j in pruned] == ["dense/seed1/train-750", "dense/seed1/train-3000", "prune-3000/seed1/prune",
                                        "prune-3000/seed1/train", "prune-3000/seed1/test-sparse"]


@pytest.mark.parametrize("arms, message", [
    ("nope", "unknown arm 'nope' (arms: dense, prune, cgap, random-mask, prune-matched, control; one rung's: "),
    ("cgap,cgap-12000", "cgap-12000 needs rung 12000, not in --dense 750,3000,6000"),
    ("prune-matched-3000", "prune-matched-3000: prune-from-dense at C-GaP's budget with its second round is at "
                           "the longest rung only (prune-matched-6000)"),
    (",", "choose at least one arm")])
def test_an_arm_that_is_none_or_needs_a_rung_not_given_stops_the_ladder_before_it_starts(tmp_path, capsys, arms,
                                                                                          message):
    with pytest.raises(SystemExit) as stop:
        h.command("gap_ladder").main(["--output-dir", str(tmp_path / "ladder"), "--arms", arms])
    assert str(stop.value).startswith(f"gap-ladder: error: --arms: {message}") and "\n" not in str(stop.value)
    assert not (tmp_path / "ladder").exists() and capsys.readouterr().out == ""  # nothing prepared, nothing run


@pytest.mark.parametrize("args, message", [
    (["--dry-run", "--write-records", "R"], "--recorded and --write-records are for the report: --dry-run writes none"),
    (["--trained-at", "0123abc"], "--trained-at takes a commit's hash and names it in the records of --write-records"),
    (["--write-records", "R", "--trained-at", "HEAD"], "--trained-at takes a commit's hash"),
    (["--recorded", "DIR"], "--recorded DIR: no ladder run's record in it (RUN/seedN.json)")])
def test_records_asked_for_wrongly_stop_the_ladder_before_it_starts(tmp_path, capsys, args, message):
    (tmp_path / "DIR").mkdir()
    args = [str(tmp_path / a) if a in ("R", "DIR") else a for a in args]
    with pytest.raises(SystemExit) as stop:
        h.command("gap_ladder").main(["--output-dir", str(tmp_path / "ladder"), *args])
    said = str(stop.value).replace(str(tmp_path) + "/", "")
    assert said.startswith("gap-ladder: error: ") and message in said
    assert "\n" not in str(stop.value) and not (tmp_path / "ladder").exists() and not (tmp_path / "R").exists()


# ------------------------------------------------------------------------------- seeds, run records
def _log(path, losses):
    """A fairseq-train JSON log of these validations ({update: valid loss})."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f'2026-12-07 10:00:{i:02d} | INFO | valid | {{"epoch": 1, "valid_loss": "{loss:.3f}", '
                            f'"valid_num_updates": "{u}"}}\n' for i, (u, loss) in enumerate(sorted(losses.items()))))


def _translations(path, hypotheses):
    """A fairseq-generate output of these hypotheses against the references "a b c d e", "f g h i j"."""
    refs = ["a b c d e", "f g h i j"]
    lines = [f"T-{i}\t{r}\nH-{i}\t-0.5\t{h}\nD-{i}\t-0.5\t{h}\n" for i, (r, h) in enumerate(zip(refs, hypotheses))]
    path.write_text("".join(lines) + "Generate test with beam=4: BLEU4 = 0.00\n")


def test_a_cell_is_the_mean_over_its_seeds_and_the_same_from_the_runs_records(tmp_path):
    """Three seeds of rung 8: a cell is the mean over the seeds that have it, a difference over the seeds both
    cells have; the runs' records alone, in an empty directory, give the same tables, each cell marked."""
    from harness import bleu, runs
    from harness.ladder import records

    out = tmp_path / "out"
    hypotheses = {1: ["a b c d e", "f g h x y"], 2: ["a b c x y", "f g h i j"], 3: ["a b x y z", "f g h i j"]}
    for seed, (prune, cgap2) in {1: (5.0, 4.8), 2: (5.2, 5.1), 3: (None, 4.5)}.items():
        d = out / "cgap-8" / f"seed{seed}"
        _log(d / "finetune2.log", {4: cgap2 + 1, 8: cgap2})
        _log(d / "train-step0.log", {2: 9.0, 1: 9.5})
        _translations(d / "generate-sparse-finetune2.txt", hypotheses[seed])
        if prune is not None:
            d = out / "prune-8" / f"seed{seed}"
            _log(d / "train.log", {8: prune})
            _translations(d / "generate-sparse.txt", hypotheses[seed][::-1])
    steps = [{"step": 0, "matrices": 12, "grown_share": 0.9, "valid_dense": 9.0, "valid_at_s": 9.1, "lost": 0.1}]
    runs.write_record(str(out / "cgap-8" / "seed1" / "steps.json"), steps)
    paths = ladder_report.write(str(out), [8], Budget(12).cgap(), 12)
    report = open(paths[0]).read()
    score = {(run, s): bleu.score(str(out / run / f"seed{s}" / f"generate-{name}.txt"), "tokenized", "es").bleu
             for run, name in (("prune-8", "sparse"), ("cgap-8", "sparse-finetune2")) for s in (1, 2, 3)
             if (out / run / f"seed{s}").is_dir()}
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    row = next(line for line in report.splitlines() if line.startswith("| 8 |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[3] == f"{mean([score['prune-8', 1], score['prune-8', 2]]):.2f} / 5.100 [2]"
    assert cells[6] == f"{mean([score['cgap-8', s] for s in (1, 2, 3)]):.2f} / 4.800 [3]"
    ahead = mean([score["cgap-8", s] - score["prune-8", s] for s in (1, 2)])
    assert cells[7] == f"{ahead:+.2f} / -0.150 [2]"  # seeds 1 and 2: -0.2 and -0.1 (seed 3's 4.5 left out)
    assert "seeds 1, 2, 3" in report and "C-GaP, D = 8 (N = 2), seed 1" in report
    assert "prune-from-dense, D + D | 16 |" in report  # the table at C-GaP's budget, its updates per network
    assert ladder_report.load_record(paths[1])[3]["rungs"]["8"]["cgap2"] == [score["cgap-8", 3], 4.5]
    assert json.load(open(paths[1]))["rungs"]["8"]["seeds"]["prune"] == [1, 2]

    kept = tmp_path / "records"
    for run, seeds in (("cgap-8", (1, 2, 3)), ("prune-8", (1, 2))):
        for seed in seeds:
            runs.write_record(str(kept / run / f"seed{seed}.json"), records.record(str(out), run, seed, [], "0123abc"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rebuilt = ladder_report.write(str(elsewhere), [8], Budget(12).cgap(), 12, [str(kept)])
    again = open(rebuilt[0]).read()
    tables = lambda text: [line for line in text.splitlines() if line.startswith("| ")]  # noqa: E731
    assert [line.replace("*", "") for line in tables(again)] == tables(report)
    row = next(line for line in again.splitlines() if line.startswith("| 8 |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[3].endswith("[2]*") and cells[6].endswith("[3]*") and cells[7].endswith("[2]")  # marked: the numbers
    assert f"From the record {kept}" in again and "the record " + str(kept / "cgap-8" / "seed3.json") in again
    assert "trained at 0123abc" in again and "C-GaP, D = 8* (N = 2), seed 1" in again
    assert os.path.getsize(rebuilt[2]) > 0


LADDER = os.path.join(ROOT, "scripts", "gap_ladder.py")


def _gap_ladder(*args):
    result = subprocess.run([sys.executable, LADDER, "--smoke", "--dense", "4", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    return result.stdout


def test_a_tiny_ladder_at_c_gaps_budget_leaves_records_that_rebuild_its_report(tmp_path):
    """--smoke at D = 4 (C-GaP's budget with its second round: 7 steps of 1 and 4 fine-tune updates, 11):
    prune-from-dense's two splits and the jobs they need train, are scored, resume, and leave records; from
    the records alone, an empty output directory gets the same tables and figure, each number marked."""
    out, kept, elsewhere = tmp_path / "ladder", tmp_path / "records", tmp_path / "elsewhere"
    said = _gap_ladder("--arms", "prune-matched", "--parallel", "2", "--output-dir", str(out),
                       "--write-records", str(kept), "--trained-at", "0123abc")
    assert "0 of 10 commands already done, 10 to run" in said and "wrote the records of 3 runs" in said
    assert "commands already done, 0 to run" in _gap_ladder("--arms", "prune-matched", "--output-dir", str(out))
    report = open(out / "ladder.md").read()
    table = [line for line in report.splitlines() if line.startswith("| ")]
    matched = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in table}
    for label in ("prune-from-dense, half and half", "prune-from-dense, D + the rest (the one above trained on)",
                  "dense, trained on to half the budget"):
        updates, cell = matched[label][:2]
        assert updates == ("5" if label.startswith("dense") else "11") and re.fullmatch(r"\d+\.\d\d / \d+\.\d{3}", cell)

    assert sorted(os.listdir(kept)) == ["dense", "prune-4", "prune-matched-4"]
    prune = json.load(open(kept / "prune-4" / "seed1.json"))
    assert prune["commit"] == "0123abc" and str(tmp_path) not in json.dumps(prune)
    assert [c.split("--max-update ")[1].split()[0] for c in prune["commands"] if "fairseq_cli.train" in c] == ["4", "7"]
    train = prune["trainings"]["train"]  # the equal-budget fine-tune, trained on: one log, two invocations
    assert {4, 7} <= {u for u, _ in train["valid_loss"]} and train["invocations"] == 2 and train["wall_seconds"] > 0
    assert set(prune["test_bleu"]) == {"sparse-7"}  # prune-4's own test is not an arm chosen
    dense = json.load(open(kept / "dense" / "seed1.json"))
    assert set(dense["test_bleu"]) == {"full-5"} and [u for u, _ in dense["trainings"]["train"]["valid_loss"]][-1] == 5

    _gap_ladder("--report-only", "--output-dir", str(elsewhere), "--recorded", str(kept))
    rebuilt = open(elsewhere / "ladder.md").read()
    assert [line.replace("*", "") for line in rebuilt.splitlines() if line.startswith("| ")] == table
    half = next(line for line in rebuilt.splitlines() if line.startswith("| prune-from-dense, half and half |"))
    assert half.split(" | ")[2].endswith("*")
    assert "the record " + str(kept / "prune-matched-4" / "seed1.json") in rebuilt
    assert json.load(open(elsewhere / "ladder.json"))["rungs"] == json.load(open(out / "ladder.json"))["rungs"]
    assert os.path.getsize(elsewhere / "ladder.png") > 0
