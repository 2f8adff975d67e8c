"""The GaP ladder's commands (scripts/gap_ladder.py): the paper's proportions at every rung, each C-GaP
step going on from the one before, the control on the study's schedule; and how a step continues."""
import json
import os

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
    paths = ladder_report.write(str(tmp_path), [750, 3000], 1, Budget(1500).cgap(), 1500)
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
    paths = ladder_report.write(str(output), list(rungs), 1, Budget(1500).cgap(), 1500)
    return output, paths[1]


def test_the_report_takes_the_rungs_without_runs_from_a_record_and_marks_them(tmp_path):
    import json

    measured, record = _record(tmp_path)
    assert json.load(open(record))["rungs"]["3000"]["prune"] == [None, 5.3]
    # a ladder of the longest rung alone, its prune-from-dense at 6,000 measured; 750 and 3000 from the record
    output, _ = _record(tmp_path / "later", rungs=(6000,))
    paths = ladder_report.write(str(output), [6000], 1, Budget(1500).cgap(), 1500, recorded=record)
    report = open(paths[0]).read()
    rows = {line.split("|")[1].strip(): line for line in report.splitlines() if line.startswith("| ")}
    assert "- / 5.075" in rows["750*"] and "- / 5.300" in rows["3000*"] and "- / 5.600" in rows["6000"]
    assert f"From the record {record}" in report and "measured in measured/, report of" in report
    # the merged ladder.json is itself a record: every rung with its source
    merged = ladder_report.load_record(paths[1])
    assert list(merged["rungs"]) == ["750", "3000", "6000"]
    assert merged["rungs"]["750"]["source"] == json.load(open(record))["rungs"]["750"]["source"]
    assert merged["rungs"]["6000"]["source"].startswith(f"measured in {output.name}/")


def test_a_measured_rung_is_not_replaced_by_the_record(tmp_path):
    _, record = _record(tmp_path)
    output, _ = _record(tmp_path / "again", rungs=(3000,))
    with open(output / "prune-3000" / "seed1" / "train.log", "w") as f:
        f.write('| valid | {"epoch": 6, "valid_loss": "4.000", "valid_num_updates": "3000"}\n')
    report = open(ladder_report.write(str(output), [3000], 1, Budget(1500).cgap(), 1500, record)[0]).read()
    assert "| 3000 |" in report and "- / 4.000" in report and "| 750* |" in report and "5.300" not in report


def test_a_rung_measured_in_part_takes_the_networks_it_lacks_from_the_record(tmp_path):
    import json

    # the record: rung 3000's prune-from-dense (valid 5.300) and its steps
    _, record = _record(tmp_path)
    rec = json.load(open(record))
    rec["rungs"]["3000"]["steps"] = [{"step": 0, "matrices": 12, "grown_share": 0.9, "valid_dense": 7.0,
                                      "valid_at_s": 7.5, "lost": 0.5}]
    json.dump(rec, open(record, "w"))
    # a ladder of rung 3000 again whose C-GaP fine-tune is measured, its prune-from-dense run gone
    output = tmp_path / "again"
    log = output / "cgap-3000" / "seed1" / "finetune1.log"
    log.parent.mkdir(parents=True)
    log.write_text('| valid | {"epoch": 6, "valid_loss": "5.100", "valid_num_updates": "3000"}\n')
    paths = ladder_report.write(str(output), [3000], 1, Budget(1500).cgap(), 1500, record)
    report = open(paths[0]).read()
    row = next(line for line in report.splitlines() if line.startswith("| 3000 "))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[3:6] == ["- / 5.300*", "- / 5.100", "- / -0.200"]  # prune from the record, marked; C-GaP measured
    assert cells[2] == "-" and "C-GaP, D = 3000* (N = 750)" in report  # the steps from the record, marked
    assert "D = 3000's prune-from-dense, the steps" in report
    merged = ladder_report.load_record(paths[1])["rungs"]["3000"]
    assert merged["recorded"] == [{"cells": ["prune", "steps"], "source": rec["rungs"]["3000"]["source"]}]
    assert merged["source"].startswith("measured in again/")
    # the merged record, recorded again, keeps where each cell was measured
    later = tmp_path / "later"
    later.mkdir()
    again = ladder_report.write(str(later), [3000], 1, Budget(1500).cgap(), 1500, paths[1])
    assert ladder_report.load_record(again[1])["rungs"]["3000"]["recorded"] == merged["recorded"]
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
    record = ladder_report.load_record(os.path.join(ROOT, "docs", "gap-ladder.json"))
    assert sorted(record["rungs"], key=int) == ["750", "3000", "6000"]
    assert [len(r["steps"]) for r in record["rungs"].values()] == [4, 4, 7]


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

