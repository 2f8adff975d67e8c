"""What scripts/benchmark.py measures: its configurations, built as fairseq-train builds them, and data.

Every configuration trains with the IWSLT14 recipe of ATS Table 3 (harness/papers/tables.py, ``COMMON_FLAGS``), so
configurations differ only in what is benchmarked; ``build`` does what ``fairseq_cli.train.main`` does before its
first update (``in_process.trainer``). Without ``--data`` the batches come from a synthetic data-bin of IWSLT14's shape
(``default_data_bin``).
"""
import fnmatch
import os
import shlex
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import torch
from fairseq import options
from fairseq.trainer import Trainer

from fairseq_partitioned.modules import parameter_counts
from harness import in_process, recipe
from harness.papers.tables import RECIPES
from harness.recipe import KINDS

RATIOS = ("0.25", "0.03125")
GEN_BATCHES = 4  # fixed valid-split batches for generation, cycled over the rounds
MAX_TRAIN_BATCHES = 8  # distinct training batches, cycled over the rounds

# The IWSLT14 recipe of ATS Table 3 (harness/papers/tables.py: reproduce.py's ats-1a, docs/ats.md's command), less
# checkpoints and epochs, its model's shape --arch's: every configuration trains with exactly these settings,
# so they differ only in what is benchmarked.
IWSLT14 = RECIPES["iwslt14"]
COMMON_FLAGS = [
    *IWSLT14.model[2:],  # the embedding sharing (IWSLT14.model[:2] is its --arch)
    *IWSLT14.training, "--lr-scheduler", IWSLT14.lr_scheduler,
    "--seed", "1", "--num-workers", "0", "--no-progress-bar", "--log-format", "simple",
    "--distributed-world-size", "1",
]


# ------------------------------------------------------------------------------------------- data
def synthetic_data_bin(workdir: str, vocab: int = 8000, train: int = 2000, valid: int = 200,
                       seed: int = 0) -> str:
    """A fairseq data-bin of random de->en text with IWSLT14-like shape, made by fairseq-preprocess.

    Sentence lengths are log-normal (median 20 tokens, long tail, clipped to 1..175 as IWSLT14's
    clean-corpus step does), target lengths within ~15% of the source's; words are Zipf-distributed
    over ``vocab`` types per language, every type occurring at least once, so each dictionary has
    ~``vocab`` entries and the embeddings and output projection have their real size.
    """
    from fairseq_cli import preprocess

    rng = np.random.default_rng(seed)
    zipf = 1.0 / np.arange(1, vocab + 1)
    zipf /= zipf.sum()
    raw = os.path.join(workdir, "raw")
    dest = os.path.join(workdir, "data-bin")
    os.makedirs(raw, exist_ok=True)

    def words(prefix, n):
        return [f"{prefix}{i}" for i in rng.choice(vocab, size=n, p=zipf)]

    for split, n in (("train", train), ("valid", valid), ("test", valid)):
        src_len = np.clip(np.rint(rng.lognormal(np.log(20), 0.6, n)), 1, 175).astype(int)
        tgt_len = np.clip(np.rint(src_len * rng.lognormal(-0.07, 0.15, n)), 1, 175).astype(int)
        src_lines = [" ".join(words("d", k)) for k in src_len]
        tgt_lines = [" ".join(words("e", k)) for k in tgt_len]
        if split == "train":  # every word type at least once: the dictionaries get the full vocabulary
            for start in range(0, vocab, 25):
                ids = range(start, min(start + 25, vocab))
                src_lines.append(" ".join(f"d{i}" for i in ids))
                tgt_lines.append(" ".join(f"e{i}" for i in ids))
        for lang, lines in (("de", src_lines), ("en", tgt_lines)):
            with open(os.path.join(raw, f"{split}.{lang}"), "w") as f:
                f.write("\n".join(lines) + "\n")
    parser = options.get_preprocessing_parser()
    args = parser.parse_args([
        "--source-lang", "de", "--target-lang", "en",
        "--trainpref", os.path.join(raw, "train"), "--validpref", os.path.join(raw, "valid"),
        "--testpref", os.path.join(raw, "test"), "--destdir", dest,
        "--thresholdsrc", "0", "--thresholdtgt", "0", "--workers", "1",
    ])
    preprocess.main(args)
    return dest


def default_data_bin(workdir: str) -> str:
    """The data used without ``--data``. The one place to change when a bundled sample of real data
    becomes the default: return its data-bin path instead."""
    return synthetic_data_bin(workdir)


# ------------------------------------------------------------------------------- configurations
@dataclass
class TrainConfig:
    name: str  # what --configs selects
    role: str  # vanilla | ats | core | distill (ATS with --core-distill) | every (--core-loss-weight) | gap
    flags: List[str]
    kind: Optional[str] = None  # rank | width | depth
    ratio: Optional[str] = None

    @property
    def plugin(self) -> bool:
        return self.role != "vanilla"


@dataclass
class GenConfig:
    name: str
    model: str  # the TrainConfig whose model generates
    level: str  # full | core


def all_configs():
    plugin = ["--user-dir", recipe.PLUGIN, "--task", recipe.PLUGIN_TASK, "--optimizer", recipe.PLUGIN_OPTIMIZER]
    train = [TrainConfig("vanilla", "vanilla", ["--task", "translation", "--optimizer", recipe.optimizer("translation")])]
    gen = [GenConfig("gen-vanilla", "vanilla", "full")]
    for kind, module in KINDS.items():
        for r in RATIOS:
            part = plugin + ["--partitioned-linear-module-name", module, "--small-ratio", r]
            # Each ATS model sits beside its standalone core, so the two are timed back to back.
            train.append(TrainConfig(f"ats-{kind}-{r}", "ats", part + ["--alternate"], kind, r))
            train.append(TrainConfig(f"core-{kind}-{r}", "core", part + ["--max-level", "1"], kind, r))
            # ATS with in-place distillation (--core-distill): its core update adds the teacher's forward.
            train.append(TrainConfig(f"distill-{kind}-{r}", "distill", part + ["--alternate", "--core-distill", "0.5"],
                                     kind, r))
            gen.append(GenConfig(f"gen-ats-{kind}-{r}", f"ats-{kind}-{r}", "full"))
            gen.append(GenConfig(f"gen-core-{kind}-{r}", f"core-{kind}-{r}", "core"))
    # The depth core (--core-decoder-layers 1, the first decoder layer): ATS's alternation, the core alone, and
    # every update training both networks from one forward (--core-loss-weight 1), the update to hold against
    # vanilla's: it adds the core's output projection and loss.
    depth = plugin + ["--core-decoder-layers", "1"]
    train.append(TrainConfig("ats-depth-1", "ats", depth + ["--alternate"], "depth", "1"))
    train.append(TrainConfig("core-depth-1", "core", depth + ["--max-level", "1"], "depth", "1"))
    train.append(TrainConfig("every-depth-1", "every", depth + ["--core-loss-weight", "1"], "depth", "1"))
    gen.append(GenConfig("gen-ats-depth-1", "ats-depth-1", "full"))
    gen.append(GenConfig("gen-core-depth-1", "core-depth-1", "core"))
    # GaP's masked update: --gap-sparsity without --alternate trains with fixed random masks at 90%
    # (docs/gap.md), i.e. the masked forward pass and the zeroing of masked gradients at every update.
    # Its row counts all parameters, masked ones included (they stay in memory and in the optimizer).
    train.append(TrainConfig("gap-0.9", "gap", plugin + ["--gap-sparsity", "0.9"]))
    return train, gen


def select(patterns: str, train, gen):
    """--configs: comma-separated names or shell patterns (``ats-rank-*``, ``gen-*``); ``all``."""
    pats = [p.strip() for p in patterns.split(",") if p.strip()]
    if not pats or "all" in pats:
        return list(train), list(gen)
    names = [c.name for c in train] + [g.name for g in gen]
    for p in pats:
        if not fnmatch.filter(names, p):
            raise SystemExit(f"--configs: {p!r} matches no configuration; known: {', '.join(names)}")
    pick = lambda name: any(fnmatch.fnmatchcase(name, p) for p in pats)  # noqa: E731
    return [c for c in train if pick(c.name)], [g for g in gen if pick(g.name)]


def device_flags(args, cfg: TrainConfig) -> List[str]:
    if not args.cuda:
        return ["--cpu"]
    if not args.fp16:
        return []
    # The partitioned optimizer masks per parameter, so its fp32 copies must not be flattened
    # (docs/ats.md); vanilla keeps fairseq's default, the flattened copies a vanilla user gets.
    return ["--fp16"] + (["--fp16-no-flatten-grads"] if cfg.plugin else [])


def fairseq_cfg(args, cfg: TrainConfig, data: str, save_dir: str):
    argv = (
        [data, "--save-dir", save_dir, "--arch", args.arch, "--max-tokens", str(args.max_tokens)]
        + COMMON_FLAGS + device_flags(args, cfg) + cfg.flags + shlex.split(args.arch_args)
    )
    return in_process.training_config(argv)[0]


@dataclass
class Built:
    config: TrainConfig
    cfg: object
    task: object
    model: torch.nn.Module
    trainer: Trainer
    params: Dict[str, int] = field(default_factory=dict)  # row suffix -> parameters used


def build(config: TrainConfig, cfg) -> Built:
    """What fairseq_cli.train.main does before its first update (``cfg`` from ``fairseq_cfg``)."""
    trainer = in_process.trainer(cfg)
    built = Built(config, cfg, trainer.task, trainer.model, trainer)
    if config.role in ("ats", "core", "distill", "every"):
        counts = parameter_counts(trainer.model)
        built.params = {"full": counts.get("level2") or counts["level1"], "core": counts["level1"]}
    else:
        built.params = {"full": sum(p.numel() for p in trainer.model.parameters())}
    return built


def load_batches(task, split: str, max_tokens: int, count: int, shuffle: bool, max_sentences=None):
    """The first ``count`` batches fairseq's own iterator makes of ``split`` (fixed seed)."""
    task.load_dataset(split, combine=False, epoch=1)
    itr = task.get_batch_iterator(
        dataset=task.dataset(split),
        max_tokens=max_tokens,
        max_sentences=max_sentences,
        max_positions=task.max_positions(),
        ignore_invalid_inputs=True,
        required_batch_size_multiple=8,
        seed=1,
        num_workers=0,
        epoch=1,
    ).next_epoch_itr(shuffle=shuffle)
    batches = []
    for sample in itr:
        batches.append(sample)
        if len(batches) == count:
            break
    return batches
