"""scripts/reproduce.py, collect_results.py and the hydra configs: the papers' tables as commands and back.

(a) --dry-run prints, for every table, commands with the papers' hyper-parameters (ATS Table 3, GaP B.5),
    and fairseq's own parser accepts them; (b) --smoke runs ATS Table 1a (r = 0.25 rows) and GaP Table 9
    end to end on the bundled sample and the collector prints the tables; (c) the collector on hand-made
    fairseq-generate outputs: BLEU conventions, missing seeds reported; (d) a config of configs/ composed
    by fairseq's hydra machinery equals the fairseq-train command line it stands for; (e) what the scripts
    share: a failing command is a one-line error after its log's tail, tables align, BLEU of one file; (f) the
    tables as shell scripts (scripts/paper-tables/): the generator's output, valid bash, reproduce.py's commands,
    and the smoke variant of an ATS and a GaP table end to end.
"""
import json
import os
import shlex
import subprocess
import sys

import pytest

import fairseq_helpers as h
from harness import bleu, console, runner
from harness.papers import hydra_configs, pipeline, shell, tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "scripts")
reproduce = h.command("reproduce")
collect_results = h.command("collect_results")

def dry_run(capsys, *argv):
    reproduce.main([*argv, "--dry-run"])
    return capsys.readouterr().out


def commands(text, program="fairseq-train"):
    return [line for line in text.splitlines() if line.startswith(program + " ")]


# ------------------------------------------------------------------------------------------ (a) dry run

ATS_IWSLT = ["--arch transformer_iwslt_de_en", "--share-decoder-input-output-embed", "--dropout 0.3",
             "--lr 0.0005", "--warmup-updates 4000", "--warmup-init-lr -1", "--max-tokens 12000",
             "--max-epoch 30", "--weight-decay 0.0001", "--adam-betas '(0.9, 0.98)'", "--adam-eps 1e-09",
             "--criterion label_smoothed_cross_entropy --label-smoothing 0.1", "--lr-scheduler inverse_sqrt"]
ATS_WMT17 = ["--arch transformer ", "--dropout 0.1", "--lr 0.0007", "--warmup-init-lr 1e-07",
             "--max-tokens 18000", "--max-epoch 22", "--weight-decay 0.0", "--adam-betas '(0.9, 0.98)'"]
GAP = ["--arch transformer_wmt_en_de_big_t2t", "--share-all-embeddings", "--lr 0.000846", "--max-tokens 5120",
       "--adam-betas '(0.9, 0.997)'", "--warmup-updates 4000", "--fp16"]


@pytest.mark.parametrize("table,kind,ratios,common", [
    ("ats-1a", "PartitionedRankLinear", ["0.25", "0.125", "0.03125"], ATS_IWSLT),
    ("ats-1b", "PartitionedRankLinear", ["0.03125", "0.015625"], ATS_WMT17),
    ("ats-2a", "PartitionedLinear", ["0.25", "0.03125"], ATS_IWSLT),
    ("ats-2b", "PartitionedLinear", ["0.03125"], ATS_WMT17),
])
def test_dry_run_ats_tables_carry_table_3(capsys, table, kind, ratios, common):
    out = dry_run(capsys, table)
    train = commands(out)
    assert len(train) == 3 * len(tables.TABLES[table].runs())  # every run, seeds 1,2,3
    for flag in common:
        assert all(flag in cmd for cmd in train), flag
    partitioned = [c for c in train if "--task translation_with_partitioned_model" in c]
    standard = [c for c in train if "--task translation " in c]
    assert len(standard) == 3 and all("--optimizer adam " in c for c in standard)  # a standard Transformer
    assert all(f"--partitioned-linear-module-name {kind}" in c for c in partitioned)
    for r in ratios:
        assert any(f"--small-ratio {r} --max-level 1" in c for c in partitioned), r
    alternating = [c for c in partitioned if "--alternate --alternate-lr-coef 1.0" in c]
    assert {c.split("--small-ratio ")[1].split()[0] for c in alternating} == set(ratios) - {"0.015625"}
    generate = commands(out, "fairseq-generate")
    assert all("--beam 5 --remove-bpe" in c and "--gen-subset test" in c for c in generate)
    assert sum("generate-core.txt" in c and "--max-level 1" in c for c in generate) == 3 * (
        len(ratios) + len(alternating) // 3)
    assert all(f"seed{s}" in out for s in (1, 2, 3))


def test_dry_run_gap_table_4(capsys):
    """As the official code runs it: every C-GaP step a process of its own, a 40-epoch fine-tune branched
    from the end of every round (of 10), the best fine-tune kept by validation BLEU; P-GaP 10 rounds."""
    out = dry_run(capsys, "gap-4")
    train = commands(out)
    for flag in GAP:
        assert all(flag in c for c in train), flag
    assert all("--update-freq 8" in c for c in train)  # 8 GPUs x 5120 tokens per update
    steps = [c for c in train if "--gap-grow-step" in c]
    assert not any("--alternate" in c for c in train)
    assert len(steps) == 3 * 2 * (31 + 61)  # seeds x sparsities x (1 + 10 x kappa steps, kappa = 3, 6)
    assert all("--max-epoch 10" in c and "--lr-scheduler inverse_sqrt" in c for c in steps)
    first = [c for c in steps if "--gap-grow-step 0 " in c]
    assert len(first) == 3 * 4 and not any("--finetune-from-model" in c for c in first)
    later = [c for c in steps if "--gap-grow-step 0 " not in c]
    assert all("--finetune-from-model " in c and "--reset-" not in c for c in later)  # a relaunch resumes
    assert "--gap-grow-step 30 " in out and "--gap-grow-step 60 " in out and "--gap-grow-step 61 " not in out
    finetunes = [c for c in train if "/finetune" in c and "--save-dir" in c]
    assert len(finetunes) == 3 * 8 * 10  # seeds x (C-GaP and P-GaP at 2 sparsities and 2 kappas) x rounds
    assert all("--max-epoch 40" in c and "--finetune-from-model" in c for c in finetunes)
    assert any("--finetune-from-model runs/gap-cgap-s0.9-k3/seed1/checkpoints/step3/checkpoint_last.pt" in c for c in finetunes)
    assert any("--finetune-from-model runs/gap-cgap-s0.9-k6/seed1/checkpoints/step6/checkpoint_last.pt" in c for c in finetunes)
    select = commands(out, "select-best")
    assert len(select) == 3 * 8 and all(c.count("checkpoint_best.pt") == 11 for c in select)
    pgap = commands(out, "fairseq-partitioned-pgap")
    assert len(pgap) == 3 * 4 and all("--rounds 10 --step-epochs 10 --finetune-epochs 0 --" in c for c in pgap)
    assert any("--gap-sparsity 0.9 --gap-partitions 6" in c for c in pgap)
    prune = commands(out, "fairseq-partitioned-prune")
    assert sorted(c.split("--sparsity ")[1].split()[0] for c in prune) == ["0.8"] * 3 + ["0.9"] * 3
    assert all("gap-dense/seed" in c for c in prune)
    dense = [c for c in train if "--task translation " in c]
    assert len(dense) == 3 and all("--optimizer adam " in c and "--max-epoch 40" in c for c in dense)
    pruned = [c for c in train if "pruned.pt" in c]
    assert len(pruned) == 6 and all("--finetune-from-model" in c and "--max-epoch 40" in c for c in pruned)
    # the dense pretrain is trained once per seed and comes before the prunes that read it
    assert out.index("## gap-dense, seed 1") < out.index("## gap-prune-s0.8, seed 1")


@pytest.mark.parametrize("table,flags", [
    ("gap-6", ["--gap-partitions 1", "--gap-partitions 3", "--gap-partitions 6"]),
    ("gap-8", ["--gap-partition-strategy random", "--gap-distribution non-uniform"]),
    ("gap-9", ["--gap-granularity block-1x8", "--granularity block-1x8"]),
])
def test_dry_run_gap_ablations(capsys, table, flags):
    out = dry_run(capsys, table, "--seeds", "1")
    for flag in flags:
        assert flag in out, flag
    assert all("--gap-sparsity 0.9" in c or "gap-9" == table for c in commands(out))


def test_dry_run_all_shares_runs_and_rows_filter(capsys):
    out = dry_run(capsys, "all", "--seeds", "1")
    headers = [line for line in out.splitlines() if line.startswith("## ")]
    assert len(headers) == len(set(headers)) == len(tables.RUNS)  # the shared runs once
    assert "ats-1a Standard Training: Full Network; ats-2a Standard Training: Full Network" in out
    out = dry_run(capsys, "ats-1a", "--rows", "*r0.25", "--seeds", "1")
    assert len(commands(out)) == 2 and "0.125" not in out
    with pytest.raises(SystemExit, match="reproduce: error: unknown table 'ats-3'"):
        reproduce.main(["ats-3", "--dry-run"])
    with pytest.raises(SystemExit, match="--rows pattern 'nope' matches no row"):
        reproduce.main(["gap-9", "--dry-run", "--rows", "nope"])


def test_data_missing_is_one_line_error(tmp_path):
    with pytest.raises(SystemExit, match=r"reproduce: error: no binarized IWSLT14 de-en data in .*prepare_iwslt14"):
        reproduce.main(["ats-2a", "--data-root", str(tmp_path), "--output-dir", str(tmp_path / "runs")])


def test_fairseq_parses_one_command_of_each_kind(capsys):
    """fairseq-train's own parser accepts the flags (one command per method and data set)."""
    from fairseq import options

    out = dry_run(capsys, "all", "--seeds", "1")
    seen = {}
    for cmd in commands(out) + commands(out, "fairseq-partitioned-pgap"):
        argv = shlex.split(cmd.split(" > ")[0])
        argv = argv[argv.index("--") + 1:] if argv[0] == "fairseq-partitioned-pgap" else argv[1:]
        key = (argv[0], "--alternate" in argv, "--max-level" in argv, "--finetune-from-model" in argv,
               "--task" in argv and argv[argv.index("--task") + 1], cmd.startswith("fairseq-partitioned-pgap"))
        seen.setdefault(key, argv)
    assert len(seen) >= 8
    for argv in seen.values():
        args = options.parse_args_and_arch(options.get_training_parser(), argv)
        assert args.max_tokens in (12000, 18000, 5120)


def test_published_numbers_transcribed():
    def paper(table, row, column):
        return next(r for r in tables.TABLES[table].rows if r.key == row).cells[column].paper

    assert paper("ats-1a", "alt-r0.03125", tables.SUB) == "24.03 (0.77)"
    assert paper("ats-1b", "std-r0.015625", tables.SUB) == "22.10"
    assert paper("ats-2a", "alt-r0.03125", tables.FULL) == "30.41 (0.40)"
    assert paper("ats-2b", "std-r0.03125", tables.SUB) == "20.47 (0.34)"
    assert paper("gap-4", "pgap", "80% k=3") == "27.9" and paper("gap-4", "prune", "90% k=6") == "25.7"
    assert paper("gap-6", "k1", "SacreBLEU") == "26.8" and paper("gap-9", "cgap", "BLEU") == "27.2"
    # shared runs carry the same number in every table that prints them
    assert tables.TABLES["gap-8"].rows[0].cells["SacreBLEU"] == tables.TABLES["gap-6"].rows[1].cells["SacreBLEU"]


# ------------------------------------------------------------------------------------------ (b) smoke


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("smoke"))


def _script(*argv):
    result = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_smoke_ats_table_1a_end_to_end(smoke_dir):
    _script(os.path.join(SCRIPTS, "reproduce.py"), "ats-1a", "--smoke", "--rows", "std-r0.25,alt-r0.25",
            "--output-dir", smoke_dir)
    run = os.path.join(smoke_dir, "ats-iwslt14-rank-r0.25-alternate", "seed1")
    record = json.load(open(os.path.join(run, "run.json")))
    assert record["completed"] == ["train", "generate-full", "generate-core"] and record["smoke"]
    assert 0 < record["parameters"]["core"] < record["parameters"]["full"]
    assert "--alternate" in record["commands"]["train"] and "--max-level 1" in record["commands"]["generate-core"]
    # a second call finds everything done
    again = _script(os.path.join(SCRIPTS, "reproduce.py"), "ats-1a", "--smoke", "--rows", "*r0.25",
                    "--output-dir", smoke_dir)
    assert ": train" not in again
    plot = os.path.join(smoke_dir, "ats.png")
    out = _script(os.path.join(SCRIPTS, "collect_results.py"), "ats-1a", "--runs", smoke_dir, "--seeds", "1",
                  "--plot", plot)
    assert "fairseq's tokenized BLEU-4" in out and "SMOKE RUNS" in out
    alt = next(line for line in out.splitlines() if line.startswith("Alternating Training (r = 0.25)"))
    assert "29.15 (0.63)" in alt and "31.34 (0.36)" in alt and "missing" not in alt
    assert "Standard Training / Full Network: 0/1 seeds" in out  # rows not run are reported, not dropped
    assert "plot: " + plot + " (3 points)" in out and os.path.getsize(plot) > 0


def test_smoke_gap_table_9_end_to_end(smoke_dir):
    _script(os.path.join(SCRIPTS, "reproduce.py"), "gap-9", "--smoke", "--output-dir", smoke_dir)
    for run in ("gap-prune-s0.8-block1x8", "gap-cgap-s0.8-k3-block1x8"):
        record = json.load(open(os.path.join(smoke_dir, run, "seed1", "run.json")))
        assert record["completed"][-1] == "generate-sparse"
        dense = json.load(open(os.path.join(smoke_dir, "gap-dense", "seed1", "run.json")))
        assert 0.75 * dense["parameters"]["full"] < record["parameters"]["sparse"] < dense["parameters"]["full"]
    # C-GaP as the official code: a process per step (1 + 1 round of 3), a fine-tune at the round's end,
    # the fine-tune with the best validation BLEU kept
    cgap = os.path.join(smoke_dir, "gap-cgap-s0.8-k3-block1x8", "seed1")
    assert json.load(open(os.path.join(cgap, "run.json")))["completed"] == [
        "train-step0", "train-step1", "train-step2", "train-step3", "finetune-round1", "select", "generate-sparse"]
    assert "GaP single step: pruned 0, grew 12 of 52" in open(os.path.join(cgap, "train-step0.log")).read()
    # step 2 prunes step 1's partition (set aside in its checkpoint) and grows its own
    assert "GaP single step: pruned 20, grew 20 of 52" in open(os.path.join(cgap, "train-step2.log")).read()
    assert "kept " in open(os.path.join(cgap, "select.log")).read()
    out = _script(os.path.join(SCRIPTS, "collect_results.py"), "gap-9", "--runs", smoke_dir, "--seeds", "1")
    assert "SacreBLEU, cased" in out and "SacreBLEU, uncased" in out and "case:lc" in out and "tok:13a" in out
    assert "BLEU: ours cased" in out and "BLEU: ours uncased" in out
    assert "All 2 cells complete" in out and "26.1" in out and "27.2" in out


# -------------------------------------------------------------------------------------- (c) collector

SENTS = [
    ("the cat sat on the mat .", "the cat sat on the mat ."),
    ("a well-known man went to the market today .", "a well-known man goes to the market today ."),
    ("we &apos;ll see what happens next week .", "we &apos;ll see what happens next month ."),
    ("das ist ein sehr gutes Beispiel .", "das ist ein gutes Beispiel ."),
]


def write_generate(path, pairs, complete=True):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("2026-11-23 | INFO | fairseq_cli.generate | loading\n")
        for i, (hyp, ref) in reversed(list(enumerate(pairs))):  # fairseq prints in batch order
            f.write(f"S-{i}\tsource {i}\nT-{i}\t{ref}\nH-{i}\t-0.5\t{hyp}\nD-{i}\t-0.5\t{hyp}\nP-{i}\t-0.1 -0.2\n")
        if complete:
            f.write("Generate test with beam=5: BLEU4 = 0.00, 0/0/0/0 (BP=1.000, ratio=1.0, syslen=1, reflen=1)\n")


def test_collector_reports_missing_runs_and_seeds(tmp_path, capsys):
    runs = str(tmp_path)

    def gen(run, seed, network, pairs=SENTS, complete=True):
        write_generate(os.path.join(runs, run, f"seed{seed}", f"generate-{network}.txt"), pairs, complete)

    for seed in (1, 2):
        gen("ats-wmt17-standard", seed, "full", [(r, r) for _, r in SENTS])  # perfect: 100
        gen("ats-wmt17-rank-r0.03125-alternate", seed, "full")
    gen("ats-wmt17-rank-r0.03125-core", 1, "core")  # seed 2 never ran
    gen("ats-wmt17-rank-r0.03125-alternate", 1, "core", complete=False)  # cut short: no final BLEU line
    with open(os.path.join(runs, "ats-wmt17-standard", "seed1", "run.json"), "w") as f:
        json.dump({"parameters": {"full": 44_000_000}}, f)
    plot = str(tmp_path / "p.png")
    collect_results.main(["ats-1b", "--runs", runs, "--seeds", "1,2", "--plot", plot])
    out = capsys.readouterr().out
    lines = {line.split("  ")[0]: line for line in out.splitlines() if line.startswith(("Standard", "Alternating"))}
    assert "100.00 (0.00)" in lines["Standard Training"] and "26.41 (0.14)" in lines["Standard Training"]
    assert "[1/2 seeds]" in lines["Standard Training (r = 0.03125)"]
    assert "missing (0/2 seeds)" in lines["Alternating Training (r = 0.03125)"]
    assert "missing (0/2 seeds)" in lines["Standard Training (r = 0.015625)"] and "22.10" in out
    assert "Missing (3 of 5 cells incomplete):" in out
    assert "Standard Training (r = 0.03125) / Sub-Network: 1/2 seeds; no complete generate-core.txt for seed 2" in out
    assert "Alternating Training (r = 0.03125) / Sub-Network: 0/2 seeds" in out
    assert "compound-split" in out  # WMT en-de
    assert "plot: " + plot + " (1 points)" in out and os.path.isfile(plot)
    with pytest.raises(SystemExit, match="collect_results: error: unknown table"):
        collect_results.main(["gap-5", "--runs", runs])


def test_tokenized_bleu_is_fairseqs_and_compound_split():
    from fairseq.data import Dictionary
    from fairseq.scoring import bleu as fairseq_bleu

    out = bleu.Output([h for h, _ in SENTS], [h for h, _ in SENTS], [r for _, r in SENTS])
    d = Dictionary()  # fairseq-score: a fresh dictionary, hypothesis encoded first
    scorer = fairseq_bleu.Scorer(fairseq_bleu.BleuConfig(pad=d.pad(), eos=d.eos(), unk=d.unk()))
    for hyp, ref in SENTS:
        hyp_ids = d.encode_line(hyp)
        scorer.add(d.encode_line(ref), hyp_ids)
    assert bleu.tokenized_bleu(out, compound=False) == pytest.approx(scorer.score(), abs=1e-9)
    assert bleu.compound_split("a well-known c-d-e") == "a well ##AT##-##AT## known c ##AT##-##AT## d-e"
    assert bleu.tokenized_bleu(out, compound=True) != bleu.tokenized_bleu(out, compound=False)


def test_sacrebleu_detokenizes_and_signs(tmp_path):
    import sacrebleu

    path = str(tmp_path / "g.txt")
    write_generate(path, SENTS)
    out = bleu.read_generate(path)
    assert out.references[0] == SENTS[0][1]  # ordered by sentence id
    score, signature = bleu.sacrebleu_bleu(out, "en")
    hyps = ["the cat sat on the mat.", "a well-known man went to the market today.",
            "we'll see what happens next week.", "das ist ein sehr gutes Beispiel."]
    refs = ["the cat sat on the mat.", "a well-known man goes to the market today.",
            "we'll see what happens next month.", "das ist ein gutes Beispiel."]
    assert score == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert "tok:13a" in signature
    write_generate(path, SENTS, complete=False)
    assert bleu.read_generate(path) is None


def test_score_of_one_generate_file(tmp_path):
    path = str(tmp_path / "generate-full.txt")
    assert bleu.score(path, "tokenized", "en") is None  # absent
    write_generate(path, SENTS)
    out = bleu.read_generate(path)
    tokenized = bleu.score(path, "tokenized", "de")
    assert tokenized.bleu == bleu.tokenized_bleu(out, compound=True) and tokenized.signature is None
    detokenized = bleu.score(path, "sacrebleu", "en")
    assert (detokenized.bleu, detokenized.signature) == bleu.sacrebleu_bleu(out, "en")
    uncased = bleu.score(path, "sacrebleu-uncased", "en")
    assert "case:lc" in uncased.signature and "case:mixed" in detokenized.signature


def test_uncased_sacrebleu_lowercases_both_sides(tmp_path):
    import sacrebleu

    path = str(tmp_path / "g.txt")
    write_generate(path, [("The Cat sat .", "the cat sat ."), ("A Dog ran .", "a dog ran .")])
    hyps, refs = ["The Cat sat.", "A Dog ran."], ["the cat sat.", "a dog ran."]
    assert bleu.score(path, "sacrebleu", "en").bleu == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert bleu.score(path, "sacrebleu-uncased", "en").bleu == pytest.approx(100.0)


# ---------------------------------------------------------------------------------------- (d) hydra


def compose(name, data):
    """What fairseq-hydra-train does with --config-dir configs --config-name NAME task.data=DATA."""
    from fairseq.dataclass.initialize import add_defaults, hydra_init
    from fairseq.dataclass.utils import omegaconf_no_object_check
    from hydra import compose as hydra_compose, initialize_config_dir
    from omegaconf import OmegaConf

    import fairseq_partitioned  # noqa: F401  (the plugin's task, optimizer and scheduler are registered)

    hydra_init(name)
    # version_base 1.1, as fairseq-hydra-train (@hydra.main without one); a newer one would also make
    # fairseq's own command-line parsing (hydra.experimental) fail in this process
    with initialize_config_dir(config_dir=os.path.join(ROOT, "configs"), version_base="1.1"):
        cfg = hydra_compose(config_name=name, overrides=[f"task.data={data}"])
    add_defaults(cfg)
    with omegaconf_no_object_check():
        return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))


def test_committed_configs_are_the_generators_output():
    """configs/ is generated from tables.py (scripts/make_hydra_configs.py) and committed, so that a checkout
    trains with fairseq-hydra-train as it is: every file is what the generator writes, and no other is there."""
    written = {f"{name}.yaml" for name, _ in hydra_configs.config_runs()}
    assert set(os.listdir(os.path.join(ROOT, "configs"))) == written
    h.command("make_hydra_configs").main(["--check"])  # exits with the stale files named


@pytest.mark.parametrize("name", ["ats_iwslt14_rank_r0.03125_alternate", "gap_wmt14_cgap_s0.9_k3"])
def test_hydra_config_equals_command_line(name, tmp_path):
    from fairseq.models import ARCH_CONFIG_REGISTRY
    from omegaconf import OmegaConf, open_dict

    run = dict(hydra_configs.config_runs())[name]
    path = os.path.join(ROOT, "configs", f"{name}.yaml")
    with open(path) as f:
        assert f.read() == hydra_configs.render(name, run), "regenerate: scripts/make_hydra_configs.py"
    data = str(tmp_path)
    hydra_cfg = compose(name, data)
    argv = [data if a == hydra_configs.DATA_PLACEHOLDER else a for a in hydra_configs.command_line(run)]
    cli_cfg, args = hydra_configs.parse(argv)
    for group in ("task", "optimizer", "lr_scheduler", "optimization", "criterion", "dataset", "checkpoint"):
        cli = OmegaConf.to_container(cli_cfg[group], resolve=True, enum_to_str=True)
        assert OmegaConf.to_container(hydra_cfg[group]) == cli, group
    assert hydra_cfg.common.user_dir == "fairseq_partitioned"
    assert {k: v for k, v in hydra_cfg.common.items() if k != "user_dir"} == {
        k: v for k, v in OmegaConf.to_container(cli_cfg.common, resolve=True).items() if k != "user_dir"}
    # the model: a legacy Transformer; fairseq's build_model applies the --arch function to hydra's config
    model = hydra_cfg.model
    with open_dict(model):
        ARCH_CONFIG_REGISTRY[model._name](model)
    assert model._name == args.arch
    for key in hydra_configs.model_keys(args):
        assert model.get(key) == getattr(args, key, None), key
    assert "--alternate" in argv and hydra_cfg.task.alternate


# ------------------------------------------------------------------------------------- (e) shared modules


def test_failing_command_is_one_line_error_after_its_log_tail(tmp_path, capsys):
    log = str(tmp_path / "step" / "train.log")
    fails = [sys.executable, "-c", "import sys; print('\\n'.join(f'line {i}' for i in range(100))); "
                                   "sys.exit('Traceback: the cause')"]
    with pytest.raises(SystemExit) as exit_info:
        runner.run_logged("reproduce", "run-x seed 1: train", fails, log)
    assert str(exit_info.value) == f"reproduce: error: run-x seed 1: train failed (exit 1), log: {log}"
    out, err = capsys.readouterr()
    assert out == "reproduce: run-x seed 1: train\n"  # the progress line
    assert "line 99" in err and "Traceback: the cause" in err and "line 10\n" not in err  # the tail only
    assert open(log).readline() == f"# reproduce: {shlex.join(fails)}\n"
    runner.run_logged("reproduce", "again", [sys.executable, "-c", "print('resumed')"], log, append=True)
    assert "line 99" in open(log).read() and open(log).read().endswith("resumed\n")


def test_table_columns_align():
    text = console.format_table(["row", "s", "x vanilla"], [["vanilla", "4.196", "1.000"], ["ats/core", "12.5", "-"]])
    assert text.splitlines() == ["row           s  x vanilla",
                                 "--------  -----  ---------",
                                 "vanilla   4.196      1.000",
                                 "ats/core   12.5          -"]


# ------------------------------------------------------------------------------- (f) tables as shell scripts

TABLE_SCRIPTS = os.path.join(SCRIPTS, "paper-tables")


def test_committed_table_scripts_are_the_generators_output():
    assert sorted(os.listdir(TABLE_SCRIPTS)) == sorted(f"{name}.sh" for name in tables.TABLES)
    for name in tables.TABLES:
        assert open(shell.path(TABLE_SCRIPTS, name)).read() == shell.script(name), "regenerate: make_table_scripts.py"
        assert os.access(shell.path(TABLE_SCRIPTS, name), os.X_OK)
    h.command("make_table_scripts").main(["--check"])  # exits with the stale files named


@pytest.mark.parametrize("name", list(tables.TABLES))
def test_table_scripts_are_bash(name):
    for text in (open(shell.path(TABLE_SCRIPTS, name)).read(), shell.script(name, smoke=True)):
        done = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", list(tables.TABLES))
def test_a_table_script_runs_the_commands_of_reproduce(name, tmp_path):
    """With stand-ins that record their arguments in place of fairseq's commands and Python, a table's script
    runs reproduce.py's command lines (its --dry-run's), in order, C-GaP's loops unrolled."""
    stand_ins, record, out = tmp_path / "bin", tmp_path / "argv", str(tmp_path / "out")
    stand_ins.mkdir()
    for program in ("fairseq-train", "fairseq-generate", "fairseq-partitioned-prune", "fairseq-partitioned-pgap",
                    "python"):
        (stand_ins / program).write_text('#!/bin/bash\n{ printf "%s\\x1f" "${0##*/}" "$@"; echo; } >> "$RECORD"\n')
        (stand_ins / program).chmod(0o755)
    env = dict(os.environ, PATH=f"{stand_ins}{os.pathsep}{os.environ['PATH']}", RECORD=str(record), OUT=out,
               DATA="/data/x", SEEDS="2", PYTHON=str(stand_ins / "python"))
    subprocess.run(["bash", shell.path(TABLE_SCRIPTS, name)], env=env, check=True)
    ran = [line.split("\x1f")[:-1] for line in record.read_text().splitlines()]
    expected = [step.argv for run, cells in pipeline.select([name], None)
                for step in pipeline.steps(run, 2, "/data/x", out, smoke=False, networks={c.network for *_, c in cells})]
    expected = [["python", os.path.join(SCRIPTS, "select_best.py"), *argv[1:]] if argv[0] == "select-best" else argv
                for argv in expected]
    assert ran == expected


@pytest.mark.parametrize("name,rows,row", [("ats-1a", "alt-r0.25", "Alternating Training (r = 0.25)"),
                                          ("gap-6", "k1", "C-GaP 90% uniform, kappa = 1")])
def test_the_smoke_variant_of_a_table_script_runs_end_to_end(name, rows, row, smoke_dir, tmp_path, capsys):
    """The --smoke variant of one ATS and one GaP table (one row each) runs as a shell script on the CPU, with
    fairseq's commands from the PATH, and the collector prints its row complete."""
    script, out = tmp_path / f"{name}.sh", str(tmp_path / "runs")
    script.write_text(shell.script(name, smoke=True, rows=[rows]))
    env = dict(os.environ, PATH=f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}", REPO=ROOT,
               PYTHON=sys.executable, OUT=out, DATA=os.path.join(smoke_dir, "smoke-data", "data-bin"),
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, cwd=str(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    collect_results.main([name, "--runs", out, "--seeds", "1"])
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(row))
    assert "missing" not in line and "seeds]" not in line

