"""The documented recipes run as written. The README's ATS and GaP commands for your own data set up their
task and build their model; docs/gap.md's GaP recipes for WMT14: its data preparation gives the joined
dictionary that ``--share-all-embeddings`` needs, the C-GaP command sets up and builds its model, and the
P-GaP command's workers are fairseq-train command lines that fairseq parses; the install check and the
export print their own output, not fairseq's import notices. Read from the documents
themselves, so the text and the test cannot drift apart."""
import os
import re
import shlex
import subprocess
import sys

import pytest

import fairseq_helpers as h
from fairseq_partitioned.cli.pgap import cli_main as pgap_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _documented_command(prefix: str, document: str = "docs/gap.md", containing: str = "") -> list:
    """The first command of a ```bash block of ``document`` that starts with ``prefix`` and contains
    ``containing`` (continuation lines joined, comments dropped), as argv."""
    with open(os.path.join(ROOT, document), encoding="utf-8") as f:
        text = f.read()
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            if line.startswith(prefix) and containing in line:
                return shlex.split(line, comments=True)
    raise AssertionError(f"no command starting with {prefix!r} in {document}")


@pytest.fixture(scope="module")
def joined_data(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("joined"))
    h.create_dummy_data(d, num_examples=40)
    h.preprocess_translation_data(d, ["--joined-dictionary"])
    return d


def _with_data(argv: list, data: str) -> list:
    """The command with its data directory replaced and the plugin found in this checkout."""
    argv = [data if a.startswith("data-bin/") else a for a in argv]
    return [h.PLUGIN_DIR if a == "fairseq_partitioned" and argv[i - 1] == "--user-dir" else a
            for i, a in enumerate(argv)]


@pytest.mark.parametrize("argv", [[sys.executable, "-m", "fairseq_partitioned"],
                                  [os.path.join(os.path.dirname(sys.executable), "fairseq-partitioned-export"), "--help"]])
def test_the_plugins_own_commands_print_theirs_and_nothing_of_fairseqs_import(argv, tmp_path):
    """The README's install check and the export, fresh processes outside the checkout: fairseq's import
    prints an INFO notice to install tensorboardX on a stderr handler it sets up itself; the plugin's
    commands print their own output only."""
    done = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=h.without_plugin_environment())
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.startswith(("fairseq_partitioned ", "usage: fairseq-partitioned-export"))
    if argv[-1] == "fairseq_partitioned":
        assert len(done.stdout.splitlines()) == 1 and "fairseq-fixed 0.12.3.1, torch 2.13.0" in done.stdout


def test_the_wmt14_preparation_makes_the_joined_dictionary_the_recipes_need():
    argv = _documented_command(".venv/bin/python data-prep/prepare_wmt17_en_de.py --icml17")
    assert "--joined-dictionary" in argv and "--binarize" in argv


def _set_up(argv: list, data: str, save_dir) -> tuple:
    """fairseq-train's configuration, task and model of a documented command, on ``data``."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    argv = _with_data(argv[1:], data)
    argv[argv.index("--save-dir") + 1] = str(save_dir)
    args = options.parse_args_and_arch(options.get_training_parser(), argv + ["--cpu"])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    return cfg, task, task.build_model(cfg.model)


def test_the_readmes_ats_recipe_trains_a_low_rank_core_by_alternating(data_dir, tmp_path):
    from fairseq_partitioned.modules import PartitionedRankLinear

    cfg, task, model = _set_up(_documented_command("fairseq-train data-bin/fr-en", "README.md", "--alternate"),
                               data_dir, tmp_path)
    assert cfg.task.alternate and cfg.optimizer._name == "adam_for_partitioned_model"
    assert any(isinstance(m, PartitionedRankLinear) for m in model.modules())


def test_the_readmes_gap_recipe_runs_the_papers_proportions(data_dir, tmp_path):
    cfg, task, model = _set_up(_documented_command("fairseq-train data-bin/fr-en", "README.md", "--gap-sparsity"),
                               data_dir, tmp_path)
    assert cfg.task.alternate and cfg.task.gap_sparsity == 0.9
    assert cfg.optimization.max_epoch == 4 * 10 + 40  # 1 + kappa steps of 10 epochs, then 40 fine-tune epochs
    assert len(task.method.schedule.partitions) == 3


def test_the_cgap_recipe_builds_its_model(joined_data, tmp_path):
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    argv = _documented_command("fairseq-train data-bin/wmt14_en_de")
    assert "--share-all-embeddings" in argv and "--max-epoch" not in argv
    argv = _with_data(argv[1:], joined_data)
    argv[argv.index("--save-dir") + 1] = str(tmp_path)
    args = options.parse_args_and_arch(options.get_training_parser(), argv + ["--cpu"])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    assert cfg.optimization.max_epoch == 31 * 10 + 40  # the run stops by itself where its schedule ends
    model = task.build_model(cfg.model)  # --share-all-embeddings: fails without a joined dictionary
    assert model.encoder.embed_tokens is model.decoder.embed_tokens
    assert len(task.method.schedule.partitions) == 3


def test_the_pgap_recipe_prints_worker_commands_that_fairseq_parses(joined_data, tmp_path, capsys):
    from fairseq import options

    argv = _documented_command("fairseq-partitioned-pgap")
    split = argv.index("--")
    ours = argv[1:split]
    ours[ours.index("--save-dir") + 1] = str(tmp_path)
    pgap_main(ours + ["--print-commands", "--"] + _with_data(argv[split + 1:], joined_data))
    commands = [shlex.split(line) for line in capsys.readouterr().out.splitlines() if line.startswith("fairseq-train")]
    assert len(commands) == 10 * 3 + 1  # 10 rounds of 3 workers, then the fine-tune
    for command in commands[:3] + commands[-4:]:
        args = options.parse_args_and_arch(options.get_training_parser(), command[1:])
        assert args.update_freq == [8] and args.max_tokens == 5120  # 8 x 5120 tokens per worker update
