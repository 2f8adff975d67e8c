"""Deployment: every export that is a standard Transformer is plain fairseq in every field fairseq or
CTranslate2's converter reads, converts with CTranslate2's own converter, and translates there as
fairseq-generate does; the small-width core exports as the narrow standard Transformer it is; the
low-rank core is refused in one line; docs/deploy.md's commands run as written."""
import os
import re
import shlex
import subprocess
import sys

import pytest
import torch

import fairseq_helpers as h
from fairseq_partitioned import deploy
from fairseq_partitioned.cli.export import cli_main, load_partitioned

ctranslate2 = pytest.importorskip("ctranslate2")  # the deploy extra (make setup installs it)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_LEN = 20  # fairseq_helpers.generate_main's --max-len-b (and --max-len-a 0)
WIDTH = ["--partitioned-linear-module-name", "PartitionedLinear", "--small-ratio", "0.5"]
TRAININGS = {  # name -> (task, flags): every kind of network the plugin trains, a few epochs each
    "standard": ("translation", ["--max-epoch", "3"]),
    "ats-width": (None, ["--alternate", *WIDTH, "--max-epoch", "3"]),
    "ats-width-core-scale": (None, ["--alternate", *WIDTH, "--core-attention-scale", "core", "--max-epoch", "3"]),
    "ats-rank": (None, ["--alternate", "--partitioned-linear-module-name", "PartitionedRankLinear", "--max-epoch", "3"]),
    "ats-depth": (None, ["--alternate", "--core-decoder-layers", "1", "--max-epoch", "3"]),
    # C-GaP with its own learning-rate scheduler: the export must name fairseq's instead
    "cgap": (None, ["--alternate", "--gap-sparsity", "0.75", "--gap-steps", "2", "--gap-step-epochs", "1",
                    "--lr-scheduler", "gap_inverse_sqrt", "--max-epoch", "0"]),
}
CONVERTIBLE = [("standard", "full"), ("ats-width", "full"), ("ats-width", "core"), ("ats-width-core-scale", "core"),
               ("ats-rank", "full"), ("ats-depth", "full"), ("ats-depth", "core"), ("cgap", "full")]
PLUGIN_FLAGS = ("alternate", "small_ratio", "partitioned_linear_module_name", "max_level", "gap_sparsity",
                "gap_steps", "gap_step_epochs", "core_attention_scale", "low_rank_init", "core_decoder_layers")  # a few


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    out = {}
    for name, (task, flags) in TRAININGS.items():
        save = str(tmp_path_factory.mktemp(name))
        h.train_translation_model(data_dir, flags, task=task or "translation_with_partitioned_model", save_dir=save)
        out[name] = os.path.join(save, "checkpoint_last.pt")
    return out


def _translations(generate_output: str):
    """(source tokens, hypothesis) of every sentence of a fairseq-generate output, by sentence id."""
    rows = {}
    for line in generate_output.splitlines():
        tag, _, rest = line.partition("\t")
        if tag[:2] in ("S-", "H-"):
            rows.setdefault(int(tag[2:]), {})[tag[0]] = rest
    return [(rows[i]["S"].split(), rows[i]["H"].partition("\t")[2]) for i in sorted(rows)]


def _ct2_hypotheses(model_dir: str, sources, beam: int, lenpen: float):
    translator = ctranslate2.Translator(model_dir, device="cpu", intra_threads=1)
    results = translator.translate_batch(sources, beam_size=beam, length_penalty=lenpen,
                                         max_decoding_length=MAX_LEN, min_decoding_length=1)
    return [" ".join(r.hypotheses[0]) for r in results]


@pytest.mark.parametrize("name,level", CONVERTIBLE, ids=[f"{n}-{lv}" for n, lv in CONVERTIBLE])
def test_the_export_converts_and_translates_in_ctranslate2_as_in_fairseq(data_dir, trained, tmp_path, name, level):
    plain, ct2 = str(tmp_path / "plain.pt"), str(tmp_path / "ct2")
    cli_main([trained[name], "--level", level, "--output", plain, "--ctranslate2", ct2])

    # plain fairseq in every field it reads, and nothing but tensors and plain values (no namespace)
    state = torch.load(plain, map_location="cpu", weights_only=True)
    args = state["cfg"]["model"]
    assert isinstance(args, dict) and state["args"] is None
    assert (args["task"], args["optimizer"], args["lr_scheduler"], args["user_dir"]) == ("translation", "adam", "inverse_sqrt", None)
    assert not [f for f in PLUGIN_FLAGS if f in args]
    assert state["cfg"]["task"]["_name"] == "translation" and state["cfg"]["common"]["user_dir"] is None
    assert state["cfg"]["lr_scheduler"]["_name"] == "inverse_sqrt" and "last_optimizer_state" not in state

    # plain fairseq-generate (its own process: no --user-dir, no plugin environment, torch's weights-only
    # guard on) translates as the plugin's network does. Greedy, and beam 4
    # without length normalisation: fairseq's --min-len 1 forbids EOS at the first step after the softmax,
    # CTranslate2's min_decoding_length=1 before it, which adds -log(1 - p(EOS first)) to every hypothesis
    # of a sentence. That changes no ranking of sums, but may one of sums divided by their lengths where
    # the model gives EOS a real chance first, as these barely trained ones do (measured: p = 0.09).
    plugin_flags = ["--max-level", "1"] if level == "core" else []
    for beam, lenpen in ((1, 1.0), (4, 0.0)):
        beam_flags = ["--beam", str(beam), "--lenpen", str(lenpen), "--max-len-a", "0", "--max-len-b", str(MAX_LEN)]
        fairseq = _translations(h.plain_fairseq_generate(data_dir, plain, beam_flags))
        if name != "standard":
            ours = _translations(h.generate_main(data_dir, [*plugin_flags, *beam_flags], path=trained[name]))
            assert [t for _, t in ours] == [t for _, t in fairseq]
        # CTranslate2: the same hypotheses. A hypothesis that reaches the length limit is left out: fairseq
        # then forces and scores an EOS, CTranslate2 stops without one, so they may rank such beams apart.
        ended = [(s, t) for s, t in fairseq if len(t.split()) < MAX_LEN]
        assert len(ended) >= 0.75 * len(fairseq) >= 30
        assert _ct2_hypotheses(ct2, [s for s, _ in ended], beam, lenpen) == [t for _, t in ended]


@pytest.mark.parametrize("name", ["ats-width", "ats-width-core-scale"])
def test_the_small_width_core_exports_as_a_narrow_transformer_equal_to_the_plugins_core(data_dir, trained, tmp_path, name):
    """Teacher-forced log-probabilities of the valid split: the narrow Transformer (plain fairseq) and
    the plugin's core agree to float32 rounding (measured: max |difference| 9.5e-7, both scales; bound 1e-5)."""
    from fairseq import checkpoint_utils

    plain = str(tmp_path / "core.pt")
    cli_main([trained[name], "--level", "core", "--output", plain])
    _, _, core = load_partitioned(trained[name], level=1)
    [narrow], _, task = checkpoint_utils.load_model_ensemble_and_task([plain], arg_overrides={"data": data_dir})
    narrow.eval()
    head_dim, n, ffn = 8, 4, 16  # TINY_ARCH: 16 / 2 heads; --small-ratio 0.5
    assert narrow.encoder.layers[0].fc1.out_features == narrow.decoder.layers[0].fc2.in_features == ffn
    q = narrow.decoder.layers[0].encoder_attn.q_proj.weight.unflatten(0, (2, head_dim))
    assert torch.all(q[:, n:] == 0) and torch.all(q[:, :n] != 0)

    task.load_dataset("valid")
    dataset = task.dataset("valid")
    sample = dataset.collater([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        ours = core.get_normalized_probs(core(**sample["net_input"]), log_probs=True)
        theirs = narrow.get_normalized_probs(narrow(**sample["net_input"]), log_probs=True)
    mask = sample["target"] != task.target_dictionary.pad()
    difference = (ours - theirs).abs()[mask].max().item()
    assert difference < 1e-5, difference


def test_int8_quantization_converts_and_is_smaller(trained, tmp_path):
    float32, int8 = str(tmp_path / "f32"), str(tmp_path / "int8")
    cli_main([trained["ats-width"], "--level", "core", "--ctranslate2", float32])
    cli_main([trained["ats-width"], "--level", "core", "--ctranslate2", int8, "--quantization", "int8"])
    assert os.path.getsize(os.path.join(int8, "model.bin")) < os.path.getsize(os.path.join(float32, "model.bin"))
    assert not os.path.exists(tmp_path / "core.pt")  # without --output, no fairseq checkpoint is left


def _export_error(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(argv)
    message = str(e.value.code)
    assert "\n" not in message and message.startswith("fairseq-partitioned-export: error: "), message
    return message


def test_the_low_rank_core_is_refused_in_one_line(trained, tmp_path, capsys):
    out = tmp_path / "ct2"
    message = _export_error([trained["ats-rank"], "--level", "core", "--ctranslate2", str(out)], capsys)
    assert "low-rank core" in message and "factorized" in message and "--level full" in message
    assert not out.exists()


def test_a_missing_ctranslate2_is_named_in_one_line(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # import ctranslate2 now raises ImportError
    message = _export_error([trained["ats-width"], "--level", "core", "--ctranslate2", str(tmp_path / "ct2")], capsys)
    assert f"pip install '{deploy.CTRANSLATE2_REQUIREMENT}'" in message and "[deploy]" in message


@pytest.mark.parametrize("flags,fragment", [
    (["--output", "x.pt", "--quantization", "int8"], "--quantization is for --ctranslate2"),
    (["--output", "x.pt", "--data", "."], "--data is for --ctranslate2"),
    ([], "--output is required"),
    (["--ctranslate2", "ct2", "--quantization", "int3"], "--quantization must be one of"),
    (["--ctranslate2", "ct2", "--data", "nowhere"], "--data nowhere has no dict."),
])
def test_flags_that_would_be_ignored_or_fail_are_one_line_errors(trained, tmp_path, monkeypatch, capsys, flags, fragment):
    monkeypatch.chdir(tmp_path)
    assert fragment in _export_error([trained["ats-width"], "--level", "core", *flags], capsys)
    assert not os.listdir(tmp_path)  # refused before any work


def test_an_output_directory_that_is_no_ctranslate2_model_is_not_replaced(trained, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert "holds no CTranslate2 model" in _export_error(
        [trained["ats-width"], "--level", "full", "--ctranslate2", str(tmp_path)], capsys)
    assert (tmp_path / "notes.txt").read_text() == "mine"


# ----------------------------------------------------------------------------------- docs/deploy.md
def _doc_blocks(language: str):
    with open(os.path.join(ROOT, "docs", "deploy.md"), encoding="utf-8") as f:
        return re.findall(rf"```{language}\n(.*?)```", f.read(), re.S)


def _doc_commands():
    """Every command of docs/deploy.md's ```bash blocks, in order (continuation lines joined, comments
    dropped), as argv."""
    found = []
    for block in _doc_blocks("bash"):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                found.append(argv)
    return found


def test_the_deploy_docs_measurement_commands_parse(tmp_path):
    """The commands that measured docs/deploy.md's tables (the first networks; the depth core's) name
    scripts that exist and flags they take: the study's prints its commands (--dry-run), the benchmark's
    parses its arguments."""
    measured = [a for a in _doc_commands() if a[0] == "python"]
    assert [a[1] for a in measured] == (["scripts/study.py"] + ["scripts/deploy_benchmark.py"] * 2) * 2
    for argv in measured:
        script = os.path.join(ROOT, argv[1])
        if argv[1] == "scripts/study.py":
            flags = [tmp_path / "study" if a == "study" else a for a in argv[2:]]
            done = subprocess.run([sys.executable, script, *map(str, flags), "--dry-run"],
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr
            rows = argv[argv.index("--rows") + 1].split(",")
            assert all(f"# {row}/seed1/" in done.stdout for row in rows) and "fairseq_cli.train" in done.stdout
        else:
            args = h.command("deploy_benchmark").parse_args(argv[2:])
            assert args.study_dir == "study" and args.rounds == 3


def test_the_deploy_docs_commands_run_as_written(data_dir, trained, tmp_path, monkeypatch):
    """In a directory laid out as the docs say (checkpoints/RUN/checkpoint_best.pt, data-bin/...), every
    command of docs/deploy.md runs as written, and its Python example translates with what they wrote."""
    monkeypatch.chdir(tmp_path)
    commands = [a for a in _doc_commands() if a[0] != "python"]  # the measurement's: the next test
    assert {a[0] for a in commands} == {"fairseq-partitioned-export"}
    for argv in commands:
        data = next((argv[i + 1] for i, a in enumerate(argv) if a in ("--data", "--data_dir")), None)
        if data and not os.path.exists(data):
            os.makedirs(os.path.dirname(data), exist_ok=True)
            os.symlink(data_dir, data)
        source = argv[1]
        if not os.path.exists(source):
            name = "ats-rank" if "rank" in source else "cgap" if "gap" in source else "ats-width"
            os.makedirs(os.path.dirname(source), exist_ok=True)
            os.symlink(trained[name], source)
        cli_main(argv[1:])
    written = [a[a.index("--ctranslate2") + 1] for a in commands if "--ctranslate2" in a]
    assert len(written) >= 3 and all(os.path.isfile(os.path.join(d, "model.bin")) for d in written)
    [example] = _doc_blocks("python")
    names = {}
    exec(compile(example, "docs/deploy.md", "exec"), names)  # noqa: S102  (the docs' own example)
    assert names["hypotheses"] and all(isinstance(t, str) for t in names["hypotheses"])
