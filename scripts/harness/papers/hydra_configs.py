"""The papers' runs as configs for fairseq's hydra entry point (scripts/make_hydra_configs.py writes configs/).

Each config holds the values that the run's fairseq-train command line (pipeline.py) sets differently from
the defaults hydra fills in, so the composed configuration is the command line's (tests/test_reproduce.py
checks a pair). Importing this module needs neither fairseq nor torch; rendering a config does.
"""
import argparse
import functools
import shlex

from harness.papers import tables
from harness.papers.pipeline import length_flags, train_flags
from harness.recipe import PLUGIN

GROUPS = ("common", "dataset", "optimization", "checkpoint", "task", "model", "criterion", "optimizer",
          "lr_scheduler")
REGISTRY_GROUPS = ("task", "criterion", "optimizer", "lr_scheduler")
DATA_PLACEHOLDER = "DATA"
USER_DIR = "fairseq_partitioned"  # relative: the configs are committed


def config_runs():
    """(config name, run) for every config written."""
    r = "0.03125"  # ATS Table 3: small_ratio 0.03125
    out = []
    for dataset in ("iwslt14", "wmt17"):
        out.append((f"ats_{dataset}_standard", tables.RUNS[tables.ats_standard(dataset)]))
        for kind in ("rank", "width"):
            out.append((f"ats_{dataset}_{kind}_r{r}_core", tables.RUNS[tables.ats_core(dataset, kind, r)]))
            out.append((f"ats_{dataset}_{kind}_r{r}_alternate",
                        tables.RUNS[tables.ats_alternate(dataset, kind, r)]))
    for run in tables.RUNS.values():
        if run.method == "cgap":
            out.append((run.id.replace("gap-cgap-", "gap_wmt14_cgap_").replace("-", "_"), run))
    return out


def command_line(run):
    """The fairseq-train arguments the config stands for (reproduce.py's, without seed and save-dir)."""
    return train_flags(run, DATA_PLACEHOLDER) + length_flags(run)


def parse(argv):
    """fairseq-train's own parsing: (cfg, args namespace)."""
    import fairseq_partitioned  # noqa: F401  (registers the task, optimizer and scheduler)
    from harness import in_process

    return in_process.training_config(argv)


def model_keys(args) -> list:
    """The flags of the model class that --arch selects."""
    from fairseq.models import ARCH_MODEL_REGISTRY

    parser = argparse.ArgumentParser(add_help=False)
    ARCH_MODEL_REGISTRY[args.arch].add_args(parser)
    return [a.dest for a in parser._actions if a.dest != "help"]


@functools.lru_cache(maxsize=None)
def _defaults(group: str, name) -> dict:
    """The defaults hydra composes for a group (a structured config; None where fairseq has none), as plain
    values: ``{key: (value, whether it is an interpolation)}``. The same for every config: built once."""
    from fairseq.dataclass.configs import FairseqConfig
    from fairseq.registry import REGISTRIES
    from fairseq.tasks import TASK_DATACLASS_REGISTRY
    from omegaconf import OmegaConf

    if group not in REGISTRY_GROUPS:
        node = OmegaConf.structured(FairseqConfig)[group]
    else:
        registry = TASK_DATACLASS_REGISTRY if group == "task" else REGISTRIES[group]["dataclass_registry"]
        node = OmegaConf.structured(registry[name]())
    values = OmegaConf.to_container(node, enum_to_str=True, resolve=False)
    # `in` as the DictConfig's: a mandatory value ('???') is not in it
    return {key: (values[key], OmegaConf.is_interpolation(node, key)) for key in node.keys() if key in node}


def group_values(cfg, args, group: str, given) -> dict:
    """The keys of one group that differ from what hydra would fill in without them, and those the
    command line sets (``given``: flag names as config keys), so the paper's values stay visible."""
    from fairseq.models import ARCH_CONFIG_REGISTRY
    from omegaconf import OmegaConf, open_dict

    if group == "model":
        # the arch function fills a legacy model's missing keys, in fairseq-train and in hydra alike
        base = OmegaConf.create({"_name": args.arch})
        with open_dict(base):
            ARCH_CONFIG_REGISTRY[args.arch](base)
        values = {"_name": args.arch}
        for key in model_keys(args):
            value = getattr(args, key, None)
            if key in given or (key in base and base[key] != value) or (key not in base and value is not None):
                values[key] = value
        return values
    node = cfg[group]
    resolved = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    defaults = _defaults(group, resolved.get("_name"))
    values = {"_name": resolved["_name"]} if group in REGISTRY_GROUPS else {}
    for key, value in resolved.items():
        if key == "_name" or key not in defaults or defaults[key][1]:
            continue  # interpolations follow the keys they point at
        default = defaults[key][0]
        if value != default or key in given:
            values[key] = value
    return values


def config(run) -> dict:
    argv = command_line(run)
    given = {a[2:].replace("-", "_") for a in argv if a.startswith("--")}
    cfg, args = parse(argv)
    out = {group: group_values(cfg, args, group, given) for group in GROUPS}
    out["task"]["data"] = "???"  # mandatory: task.data=...
    out["common"]["user_dir"] = USER_DIR
    return {g: v for g, v in out.items() if v}


def render(name: str, run) -> str:
    from omegaconf import OmegaConf

    body = {"hydra": {"run": {"dir": "."}}}  # no output/DATE folder, no chdir: relative paths keep working
    body.update(config(run))
    cells = [f"{t.name} {row.label}: {column}" for t in tables.TABLES.values() for row in t.rows
             for column, cell in row.cells.items() if cell.run == run.id]
    command = shlex.join(["fairseq-train"] + command_line(run)).replace(PLUGIN, USER_DIR)
    header = [
        f"# {name}: run {run.id} of scripts/harness/papers/tables.py ({'; '.join(dict.fromkeys(cells))})",
        "# Generated by scripts/make_hydra_configs.py: edit tables.py and regenerate, not this file.",
        f"# fairseq-hydra-train --config-dir configs --config-name {name} task.data={DATA_PLACEHOLDER}",
        "# The same run as:",
        *("#   " + line for line in _wrap(command)),
    ]
    return "\n".join(header) + "\n" + OmegaConf.to_yaml(OmegaConf.create(body))


def _wrap(text: str, width: int = 100):
    line = ""
    for word in text.split(" "):
        if line and len(line) + len(word) + 1 > width:
            yield line
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        yield line
