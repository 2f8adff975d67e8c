"""The evidence study end to end, tiny (scripts/study.py --smoke): every kind of row trains, is scored and
reported; a second invocation resumes; a row trained further keeps its table at U."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from harness.study import design as study_design, report as study_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY = os.path.join(ROOT, "scripts", "study.py")
ROWS = "ats-rank,core-rank,cgap,prune,ats-rank-dense-init"


def _study(*args, ok=True):
    result = subprocess.run([sys.executable, STUDY, "--smoke", "--updates", "16", "--interval", "8", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert (result.returncode == 0) == ok, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("study"))
    _study("--rows", ROWS, "--output-dir", out)
    return out


def test_every_row_is_trained_scored_and_reported(study):
    report = open(os.path.join(study, "study.md")).read()
    rows = {line.split(" | ")[0].strip("| "): line for line in report.splitlines() if line.startswith("| ")}
    for label in ("ATS, low-rank core r=1/32", "low-rank core r=1/32 alone", "C-GaP 90%, kappa=3",
                  "prune-from-dense 90%"):
        assert label in rows, label
    table = [line.split(" | ") for line in report.splitlines() if line.startswith("| ATS, low-rank core r=1/32 |")]
    full, core = (int(cells[2].replace(",", "")) for cells in table)  # parameters: full, then core
    assert 0 < core < full
    assert "ATS T.1a: 24.03 (0.77)" in report  # the paper's claim beside ours
    assert "--output-dir OUTPUT" in report and study not in report  # no path of this machine
    assert "Choices the papers leave open, on the valid split only" in report
    assert "V U initialised as a dense layer" in report
    assert not os.path.exists(os.path.join(study, "ats-rank-dense-init", "seed1", "generate-core.txt"))  # never test
    assert os.path.isfile(os.path.join(study, "ats-rank-dense-init", "seed1", "valid-core-16.txt"))
    for figure in ("study.png", "curves.png"):
        assert os.path.getsize(os.path.join(study, figure)) > 0
    assert not os.path.exists(os.path.join(study, "curves-further.png"))  # no run went beyond U
    for row, network in (("ats-rank", "full"), ("ats-rank", "core"), ("core-rank", "core"), ("cgap", "sparse")):
        losses = study_report.valid_losses(study, study_design.ROW[row], 1, network)
        assert [u for u, _ in losses][-1] == 16 and all(0 < loss < 20 for _, loss in losses), (row, network)
    ats_core, ats_full = (study_report.valid_losses(study, study_design.ROW["ats-rank"], 1, n) for n in ("core", "full"))
    assert ats_core != ats_full
    # a choice sits next to its default on the same seeds
    choice = next(line.split(" | ") for line in report.splitlines()
                  if line.startswith("| ATS, low-rank core, V U initialised as a dense layer | core |"))
    assert choice[2] == "1" and choice[5] == f"{dict(ats_core)[16]:.3f}", choice
    invocation = json.load(open(os.path.join(study, "invocations.json")))[0]
    assert "--rows " + ROWS in invocation["command"] and invocation["seconds"] >= 0 and invocation["finished"]


def test_a_second_invocation_resumes_and_a_run_trained_further_keeps_its_table(study):
    out = _study("--rows", ROWS, "--output-dir", study)
    assert "commands already done, 0 to run" in out
    before = open(os.path.join(study, "study.md")).read().split("Invocations")[0]
    out = _study("--rows", "core-rank", "--train-to", "32", "--output-dir", study)
    log = open(os.path.join(study, "core-rank", "seed1", "train.log")).read()
    assert log.count("# study:") == 2 and "Loaded checkpoint" in log and "(epoch 5 @ 16 updates)" in log  # resumed
    assert os.path.isfile(os.path.join(study, "core-rank", "seed1", "generate-core-32.txt"))
    assert os.path.isfile(os.path.join(study, "core-rank", "seed1", "generate-core.txt"))
    report = open(os.path.join(study, "study.md")).read()
    assert "Trained further" in report and "| low-rank core r=1/32 alone | core | 32 |" in report
    assert os.path.getsize(os.path.join(study, "curves-further.png")) > 0
    # whether it still improves: its valid loss at 32, its best of the validations every 8 updates
    losses = {u: v for u, v in study_report.valid_losses(study, study_design.ROW["core-rank"], 1, "core") if u % 8 == 0}
    best = min(losses, key=lambda u: (losses[u], u))
    converging = next(line.strip("| ").split(" | ") for line in report.splitlines()
                      if line.startswith("| low-rank core r=1/32 alone | core | 1 | 32 |"))
    assert converging[4:] == [f"{losses[32]:.3f}", f"{losses[best]:.3f} ({best})", "-",  # no validation at 0
                              "yes" if best > 0 else "no"], converging
    core_row = next(line for line in before.splitlines() if line.startswith("| low-rank core r=1/32 alone"))
    assert core_row in report  # the table at U is the same
    os.remove(os.path.join(study, "study.md"))
    _study("--report-only", "--output-dir", study)  # without --rows: every row on disk, the choice too
    report = open(os.path.join(study, "study.md")).read()
    assert "| C-GaP 90%, kappa=3 |" in report and "V U initialised as a dense layer" in report


def test_bad_input_is_one_line(study):
    assert "study: error: --rows: unknown row 'nope'" in _study("--rows", "nope", ok=False)
    out = _study("--rows", "cgap", "--train-to", "32", "--output-dir", study, ok=False)
    assert "study: error: --train-to: cgap cannot be trained beyond --updates" in out
    assert "give a multiple of 2 x --interval" in _study("--updates", "20", ok=False)
    assert "study: error: --report-only: no study in" in _study("--report-only", "--output-dir", study + "-none", ok=False)
    assert "study: error: --trained-at takes a commit's hash" in _study("--dry-run", "--trained-at", "32bf3c1", ok=False)


def test_distilled_rows_start_at_half_of_u_also_when_trained_further(tmp_path):
    output = tmp_path / "study"
    out = _study("--rows", "ats-rank-distill,ats-rank-distill-from-0", "--train-to", "48", "--dry-run",
                 "--output-dir", str(output))
    assert not output.exists()  # a dry run prepares and trains nothing
    trains = [line for line in out.splitlines() if "fairseq_cli.train" in line]
    assert len(trains) == 2 and all("--alternate --core-distill 0.5" in t and "--max-update 48" in t for t in trains)
    assert trains[0].split(" > ")[0].endswith("--core-distill-start 8")  # U = 16
    assert trains[1].split(" > ")[0].endswith("--core-distill-start 0")


def test_the_depth_rows_are_scored_and_the_report_rebuilds_from_their_records(study, tmp_path):
    """The depth core's rows (every update; LayerDrop pruned at inference) train and are scored; their records
    alone, in another machine's empty output directory, give the same table and figures."""
    out, records, elsewhere = str(tmp_path / "study"), str(tmp_path / "records"), str(tmp_path / "elsewhere")
    shutil.copytree(os.path.join(study, "data-bin"), os.path.join(out, "data-bin"))  # the smoke corpus, prepared once
    rows = "every-depth,layerdrop"
    _study("--rows", rows, "--output-dir", out, "--write-records", records, "--no-curves")
    table = [line for line in open(os.path.join(out, "study.md")).read().splitlines() if line.startswith("| ")]
    by_label = {line.split(" | ")[0].strip("| ") + " " + line.split(" | ")[1]: line for line in table}
    full, core = by_label["depth core 3+1 from every update, w=1 full"], by_label["depth core 3+1 from every update, w=1 core"]
    assert 0 < int(core.split(" | ")[2].replace(",", "")) < int(full.split(" | ")[2].replace(",", ""))
    pruned, unpruned = (by_label[f"LayerDrop 0.2 on the decoder, pruned to 3+1 {n}"] for n in ("pruned", "full"))
    assert int(pruned.split(" | ")[2].replace(",", "")) == int(core.split(" | ")[2].replace(",", ""))  # a 3+1 network
    assert unpruned.split(" | ")[2] == full.split(" | ")[2]

    record = json.load(open(os.path.join(records, "every-depth", "seed1.json")))
    assert record["commit"] and record["training_wall_seconds"] > 0 and "--core-loss-weight 1" in record["commands"][0]
    validated = [u for u, _ in record["networks"]["core"]["valid_loss"]]  # every 8 updates and every epoch's end
    assert {8, 16} <= set(validated) and validated[-1] == 16
    assert set(record["networks"]["core"]["test_bleu"]) == {"16"} and tmp_path.as_posix() not in json.dumps(record)

    _study("--report-only", "--rows", rows, "--output-dir", elsewhere, "--recorded", records, "--no-curves")
    rebuilt = open(os.path.join(elsewhere, "study.md")).read()
    assert [line for line in rebuilt.splitlines() if line.startswith("| ")] == table
    assert "from their committed records" in rebuilt and "every-depth seed 1" in rebuilt
    assert all(os.path.getsize(os.path.join(elsewhere, f)) > 0 for f in ("study.png", "curves.png"))


def _record_invocations(output, name, count):
    from harness import runs

    for i in range(count):
        for seconds in (0, i + 1):  # recorded when it starts, then updated
            runs.record_invocation(output, {"date": f"2026-12-07 {name} {i:03d}", "command": name, "seconds": seconds})


def test_invocations_at_the_same_time_on_one_output_keep_every_entry(tmp_path):
    """Two study or ladder invocations on one --output-dir (the evidence runs two at a time) rewrite its
    invocations.json in turns: each keeps the other's entries, and the file is never one written into twice."""
    import multiprocessing

    context = multiprocessing.get_context("fork")  # pure Python, no torch in the children
    workers = [context.Process(target=_record_invocations, args=(str(tmp_path), f"w{n}", 60)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
        assert worker.exitcode == 0
    entries = json.load(open(tmp_path / "invocations.json"))
    assert sorted((e["command"], e["seconds"]) for e in entries) == sorted(
        (f"w{n}", i + 1) for n in range(4) for i in range(60))
    assert sorted(os.listdir(tmp_path)) == ["invocations.json", "invocations.json.lock"]  # no temporary file left


def test_a_resumed_trainings_wall_time_sums_its_invocations():
    """fairseq's own wall meter restarts from 0 on resume: a record's wall time is each invocation's span, summed."""
    from harness import fairseq_log

    log = ["# study: python -m fairseq_cli.train ...",
           "2026-12-06 16:57:45 | INFO | fairseq_cli.train | start",
           '2026-12-06 17:32:00 | INFO | train_inner | {"num_updates": "250", "wall": "2055"}',
           "# study: python -m fairseq_cli.train ...",
           "2026-12-06 19:12:30 | INFO | fairseq.trainer | Loaded checkpoint",
           '2026-12-06 19:57:19 | INFO | train_inner | {"num_updates": "1500", "wall": "0"}']
    assert fairseq_log.wall_seconds(log) == (2055 + 2689, 2)
    assert fairseq_log.wall_seconds(["# study: a command that never started"]) == (None, 0)


def test_the_evidence_s_depth_table_is_the_committed_records(tmp_path):
    """docs/evidence.md's depth tables, one per seed and budget, cite each record of docs/study-records (test BLEU /
    valid loss at each budget the run was scored at: 1,500, and 9,000 for a run trained on), and the report rebuilt
    from the records alone, on a machine without the runs, compares each choice with its default on the valid
    split: LayerDrop's pruned network by its valid BLEU (fairseq gives it no valid loss)."""
    records = os.path.join(ROOT, "docs", "study-records")
    text = open(os.path.join(ROOT, "docs", "evidence.md")).read()
    rows = sorted(os.listdir(records))
    for row, name in ((row, name) for row in rows for name in sorted(os.listdir(os.path.join(records, row)))):
        record = json.load(open(os.path.join(records, row, name)))
        # a run trained on has a test BLEU at each budget it was scored at, each in its own table
        scored = {int(u) for scores in record["networks"].values() for u in scores["test_bleu"]} or {record["updates"]}
        for updates in sorted(scored):
            heading = "\n" + f"Seed {record['seed']} at update {updates:,} ("
            assert heading in text, (row, record["seed"], updates, "no table")
            table = text[text.index(heading):].split("\n\n")[1].replace("**", "")
            for network, scores in record["networks"].items():
                bleu, loss = scores["test_bleu"].get(str(updates)), dict(scores["valid_loss"]).get(updates)
                cell = f"{'-' if bleu is None else f'{bleu:.2f}'} / {'-' if loss is None else f'{loss:.3f}'}"
                assert cell in table, (row, record["seed"], updates, network, cell)
    done = subprocess.run([sys.executable, STUDY, "--report-only", "--recorded", records, "--rows", ",".join(rows),
                           "--output-dir", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    pruned = [dict(json.load(open(os.path.join(records, row, "seed1.json")))["networks"]["pruned"]["valid_bleu"])[1500]
              for row in ("layerdrop-0.5", "layerdrop")]
    assert (f"| LayerDrop 0.5 on the decoder, pruned to 3+1 | pruned | 1 | - | {pruned[0]:.2f} | - | {pruned[1]:.2f} |"
            in open(tmp_path / "study.md").read())
