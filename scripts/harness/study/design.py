"""The evidence study as data: its rows, the one recipe they share, and every run's command lines.

The papers' comparisons, at CPU scale, on the bundled English -> Spanish Bible corpus
(data-prep/bible/kjv-rv1909), at one fixed update budget U for every row:

- ATS (Mohtashami, Jaggi, Stich, AISTATS 2022, Tables 1-2): a standard Transformer; alternating training
  of a low-rank core r = 1/32 (its full network and its core, from one run); the same core trained
  alone (``--max-level 1``); the same for the small-width core r = 1/32.
- ATS with in-place distillation of the core from the full network (``--core-distill``; universally
  slimmable networks, Yu & Huang 2019): both core kinds, ALPHA 0.5 from half of U on.
- The depth core (``--core-decoder-layers 1``: the model whose decoder runs its first layer; Kasai et al.,
  ICLR 2021, "Deep Encoder, Shallow Decoder"): ATS's alternation, with and without in-place distillation;
  trained from every update as an early exit of the full forward (``--core-loss-weight``), with and
  without distillation; the same 3+1 network trained alone (``--max-level 1``); a standard 3+3 trained
  with fairseq's LayerDrop on its decoder (Fan et al., ICLR 2020) and pruned to its first decoder layer
  at inference (``--model-overrides``), the peer a fairseq user would reach for.
- GaP (Ma et al., ICLR 2022, Table 4): C-GaP at 90% with kappa = 3; prune-from-dense at 90% at the same
  total number of updates (U/2 dense, one-shot magnitude prune, U/2 fine-tune, as appendix B.5 splits
  40 + 40 epochs); a fixed random 90% mask trained from scratch.

Every row trains the same model (3+3 layers, d = 256, pre-norm, shared embeddings) with the same
optimizer and learning-rate schedule, for U updates; each network is scored from its run's last
checkpoint at U (no selection, so no network is favoured by the rule), with beam 4 on the test split.
Rows of one run (not C-GaP or prune-from-dense, whose schedules are shares of U) can be trained further
in a later invocation: they resume from their last checkpoint and follow the same trajectory (the
learning-rate warm-up is a fixed number of updates), so the table at U stays the same.

One run and seed live in OUTPUT/ROW/seedN/ (runs.run_dir): train.log, checkpoints/, generate-NETWORK.txt (test) and,
for the curves, valid-NETWORK-UPDATES.txt (greedy translations of the valid split by the checkpoints
saved along the way). Importing this module needs neither fairseq nor torch.
"""
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from harness import recipe, runner
from harness.recipe import PLUGIN_TASK, ROOT, start_from
from harness.runner import Job, checkpoint_at
from harness.runs import run_dir

SRC, TGT = "en", "es"
RATIO = "0.03125"  # r = 1/32: ATS Table 3's r for both core kinds

LAYERS = 3  # of the encoder and of the decoder


def model(dim: int, ffn: int, heads: int) -> Tuple[str, ...]:
    """The study's Transformer: 3+3 layers, pre-norm, shared embeddings (a joined dictionary), this width."""
    shape = []
    for side in ("encoder", "decoder"):
        shape += [f"--{side}-embed-dim", str(dim), f"--{side}-ffn-embed-dim", str(ffn), f"--{side}-attention-heads",
                  str(heads)]
    return ("--arch", "transformer", "--encoder-layers", str(LAYERS), "--decoder-layers", str(LAYERS), *shape,
            "--encoder-normalize-before", "--decoder-normalize-before", "--share-all-embeddings")


MODEL = model(256, 1024, 4)
SMOKE_MODEL = model(64, 128, 2)


@dataclass(frozen=True)
class Budget:
    updates: int  # U: every row's number of updates, where the table is read
    model: Tuple[str, ...] = MODEL
    max_tokens: int = 2048
    lr: float = 0.0015
    warmup_updates: int = 150  # fixed, not a share of U: a run trained further follows the same trajectory
    interval: int = 250  # updates between validations and checkpoints (U and every curve point are multiples)
    gap_rounds: int = 3  # C-GaP: rounds of kappa = 3 steps before the fine-tune
    gap_finetune_fraction: float = 0.25  # C-GaP: N' = U / 4; prune-from-dense: U / 2 dense, U / 2 fine-tune

    def cgap(self) -> Tuple[int, int, int]:
        """C-GaP's K steps of N updates, then N' fine-tune updates, K N + N' = U."""
        steps = 3 * self.gap_rounds
        finetune = round(self.updates * self.gap_finetune_fraction)
        per_step = (self.updates - finetune) // steps
        return steps, per_step, self.updates - steps * per_step

    def dense_updates(self) -> int:
        """Prune-from-dense: the dense part of U (appendix B.5: 40 dense epochs, 40 fine-tune epochs)."""
        return self.updates - round(self.updates * 2 * self.gap_finetune_fraction)


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    method: str  # vanilla (fairseq's own task), plugin, prune (dense, prune, fine-tune)
    flags: Tuple[str, ...] = ()
    networks: Tuple[str, ...] = ("full",)
    claims: Dict[str, str] = field(default_factory=dict)  # network -> what the paper reports
    varies: Optional[str] = None  # a choice the papers leave open: the row it varies, scored on valid only
    distill_start: Optional[float] = None  # --core-distill-start as a share of U (fixed when trained further)


ATS_RANK = ("--partitioned-linear-module-name", recipe.KINDS["rank"], "--small-ratio", RATIO)
ATS_WIDTH = ("--partitioned-linear-module-name", recipe.KINDS["width"], "--small-ratio", RATIO)


def distill(alpha: str = "0.5", *more: str) -> Tuple[str, ...]:
    """ATS with in-place distillation on its core updates (``--core-distill``). A row starts it late
    (``distill_start``): early on the teacher has barely learned, and a first try at the quickstart's
    scale, distilling from update 0, hurt both networks."""
    return ("--alternate", "--core-distill", alpha, *more)


DEPTH = ("--core-decoder-layers", "1")  # the depth core: the first of the 3 decoder layers
EVERY = DEPTH + ("--core-loss-weight", "1")  # the depth core from every update, w = 1
DEPTH_CLAIMS = {"core": "(Kasai et al. 2021: a 1-layer decoder behind a deep encoder within ~1 BLEU of a deep "
                        "decoder, WMT; here 3+1 against 3+3)"}
# LayerDrop (Fan et al. 2020) pruned to the decoder's first layer, the layer the depth core keeps
LAYERDROP_KEEP = "0"


def layerdrop(p: str) -> Tuple[str, ...]:
    return ("--decoder-layerdrop", p)


DISTILL_CLAIMS = {"core": "(no NMT number; US-Nets, Yu & Huang 2019: sub-networks with in-place distillation "
                          "match or beat those trained alone, ImageNet)"}

ROWS: Tuple[Row, ...] = (
    Row("standard", "standard Transformer", "vanilla", (), ("full",),
        {"full": "ATS T.1a: 32.48 (0.32) (IWSLT14); GaP T.4: dense 27.6 (WMT14)"}),
    Row("ats-rank", "ATS, low-rank core r=1/32", "plugin", ATS_RANK + ("--alternate",), ("full", "core"),
        {"core": "ATS T.1a: 24.03 (0.77), above the core alone", "full": "ATS T.1a: 31.20 (0.58), near standard"}),
    Row("core-rank", "low-rank core r=1/32 alone", "plugin", ATS_RANK + ("--max-level", "1"), ("core",),
        {"core": "ATS T.1a: 17.95 (3.65), unstable"}),
    Row("ats-width", "ATS, small-width core r=1/32", "plugin", ATS_WIDTH + ("--alternate",), ("full", "core"),
        {"core": "ATS T.2a: 23.84 (0.25), above the core alone", "full": "ATS T.2a: 30.41 (0.40)"}),
    Row("core-width", "small-width core r=1/32 alone", "plugin", ATS_WIDTH + ("--max-level", "1"), ("core",),
        {"core": "ATS T.2a: 23.58 (0.58)"}),
    Row("ats-rank-distill", "ATS + in-place distillation, low-rank core r=1/32", "plugin", ATS_RANK + distill(),
        ("full", "core"), DISTILL_CLAIMS, distill_start=0.5),
    Row("ats-width-distill", "ATS + in-place distillation, small-width core r=1/32", "plugin", ATS_WIDTH + distill(),
        ("full", "core"), DISTILL_CLAIMS, distill_start=0.5),
    Row("ats-depth", "ATS, depth core 3+1", "plugin", DEPTH + ("--alternate",), ("full", "core"), DEPTH_CLAIMS),
    Row("ats-depth-distill", "ATS + in-place distillation, depth core 3+1", "plugin", DEPTH + distill(),
        ("full", "core"), DEPTH_CLAIMS, distill_start=0.5),
    Row("every-depth", "depth core 3+1 from every update, w=1", "plugin", EVERY, ("full", "core"), DEPTH_CLAIMS),
    Row("every-depth-distill", "depth core 3+1 from every update, w=1, distilled", "plugin",
        EVERY + ("--core-distill", "0.5"), ("full", "core"), DEPTH_CLAIMS, distill_start=0.5),
    Row("core-depth", "depth core 3+1 alone", "plugin", DEPTH + ("--max-level", "1"), ("core",)),
    Row("layerdrop", "LayerDrop 0.2 on the decoder, pruned to 3+1", "vanilla", layerdrop("0.2"), ("full", "pruned"),
        {"pruned": "(Fan et al. 2020: pruned at inference, near a network trained at that depth)"}),
    Row("cgap", "C-GaP 90%, kappa=3", "plugin", ("--alternate", "--gap-sparsity", "0.9", "--gap-partitions", "3"),
        ("sparse",), {"sparse": "GaP T.4: 27.7, above prune-from-dense and dense (WMT14)"}),
    Row("prune", "prune-from-dense 90%", "prune", ("--gap-sparsity", "0.9"), ("sparse",),
        {"sparse": "GaP T.4: 25.7 (WMT14)"}),
    Row("random-mask", "fixed random 90% mask", "plugin", ("--gap-sparsity", "0.9"), ("sparse",),
        {"sparse": "(no Transformer number; GaP sec. 1: fixed early masks are inferior)"}),
)
# The choices the papers leave open (docs/evidence.md), tried on the valid split only: never scored on test.
CHOICES: Tuple[Row, ...] = (
    Row("ats-rank-dense-init", "ATS, low-rank core, V U initialised as a dense layer", "plugin",
        ATS_RANK + ("--alternate", "--low-rank-init", "dense"), ("full", "core"), varies="ats-rank"),
    Row("core-rank-dense-init", "low-rank core alone, V U initialised as a dense layer", "plugin",
        ATS_RANK + ("--max-level", "1", "--low-rank-init", "dense"), ("core",), varies="core-rank"),
    Row("ats-width-core-scale", "ATS, small-width core, attention scaled by the core's width", "plugin",
        ATS_WIDTH + ("--alternate", "--core-attention-scale", "core"), ("full", "core"), varies="ats-width"),
    Row("core-width-core-scale", "small-width core alone, attention scaled by its width", "plugin",
        ATS_WIDTH + ("--max-level", "1", "--core-attention-scale", "core"), ("core",), varies="core-width"),
    Row("every-depth-w0.5", "depth core from every update, w=0.5", "plugin", DEPTH + ("--core-loss-weight", "0.5"),
        ("full", "core"), varies="every-depth"),
    Row("layerdrop-0.5", "LayerDrop 0.5 on the decoder, pruned to 3+1", "vanilla", layerdrop("0.5"), ("full", "pruned"),
        varies="layerdrop"),
    # In-place distillation's own choices, next to ALPHA 0.5, T 1, from U/2 on.
    Row("ats-rank-distill-alpha-0.25", "ATS + distillation, low-rank core, ALPHA 0.25", "plugin",
        ATS_RANK + distill("0.25"), ("full", "core"), varies="ats-rank-distill", distill_start=0.5),
    Row("ats-rank-distill-alpha-0.75", "ATS + distillation, low-rank core, ALPHA 0.75", "plugin",
        ATS_RANK + distill("0.75"), ("full", "core"), varies="ats-rank-distill", distill_start=0.5),
    Row("ats-rank-distill-t2", "ATS + distillation, low-rank core, temperature 2", "plugin",
        ATS_RANK + distill("0.5", "--core-distill-temperature", "2"), ("full", "core"), varies="ats-rank-distill",
        distill_start=0.5),
    Row("ats-rank-distill-from-0", "ATS + distillation, low-rank core, from update 0", "plugin",
        ATS_RANK + distill(), ("full", "core"), varies="ats-rank-distill", distill_start=0.0),
    Row("ats-rank-distill-teacher-dropout", "ATS + distillation, low-rank core, the teacher with dropout", "plugin",
        ATS_RANK + distill("0.5", "--core-distill-teacher-dropout"), ("full", "core"), varies="ats-rank-distill",
        distill_start=0.5),
)
ROW = {row.key: row for row in ROWS + CHOICES}
EXTENSIBLE = ("standard", "ats-rank", "core-rank", "ats-width", "core-width", "random-mask", "ats-rank-distill",
              "ats-width-distill", "ats-depth", "ats-depth-distill", "every-depth", "every-depth-distill", "core-depth",
              "layerdrop") + tuple(row.key for row in CHOICES)  # one run each, its length free


def training(data: str, task: str, smoke: bool, budget: Budget, updates: Optional[int], seed: int, save_dir: str,
              scheduler=("--lr-scheduler", "inverse_sqrt"), warmup: Optional[int] = None, keep: int = -1) -> List[str]:
    argv = [*recipe.PROGRAMS["fairseq-train"], *recipe.data_and_task(data, task),
            *budget.model, "--dropout", "0.1",
            "--optimizer", recipe.optimizer(task), *recipe.ADAM_098, "--weight-decay", "0.0001",
            "--lr", str(budget.lr), *scheduler, "--warmup-updates", str(warmup or budget.warmup_updates),
            "--warmup-init-lr", "1e-07", *recipe.LABEL_SMOOTHING,
            "--max-tokens", str(budget.max_tokens), "--seed", str(seed), "--save-dir", save_dir,
            "--validate-interval-updates", str(budget.interval), "--save-interval-updates", str(budget.interval),
            "--keep-interval-updates", str(keep),
            "--cpu", "--num-workers", "0", "--log-format", "json", "--log-interval", "10"]
    if updates is not None:
        argv += ["--max-update", str(updates)]
    return argv


def jobs(row: Row, seed: int, output: str, data: str, budget: Budget, length: Optional[int] = None,
         smoke: bool = False, curves: bool = True) -> List[Job]:
    """The commands of one row and seed: training(s), then the translations it is scored by: the test
    split at U (and at ``length``, when the row is trained further), the valid split along the way
    (``curves``)."""
    length = length or budget.updates
    if length != budget.updates and row.key not in EXTENSIBLE:
        raise ValueError(f"{row.key} cannot be trained beyond --updates (its schedule is a share of U)")
    d = run_dir(output, row.key, seed)
    ckpt = os.path.join(d, "checkpoints")
    name = f"{row.key}/seed{seed}"
    out: List[Job] = []
    if row.method == "prune":  # U/2 dense, one-shot magnitude prune, U/2 fine-tune with fixed masks
        dense_dir = os.path.join(d, "dense")
        out.append(Job(f"{name}/dense", training(data, "translation", smoke, budget, budget.dense_updates(), seed,
                                                  dense_dir), os.path.join(d, "dense.log"), updates=budget.dense_updates()))
        pruned = os.path.join(d, "pruned.pt")
        out.append(Job(f"{name}/prune", [*recipe.PROGRAMS["fairseq-partitioned-prune"],
                                         os.path.join(dense_dir, "checkpoint_last.pt"), "--sparsity", "0.9",
                                         "--output", pruned], os.path.join(d, "prune.log"), [f"{name}/dense"]))
        finetune = budget.updates - budget.dense_updates()
        train = training(data, PLUGIN_TASK, smoke, budget, finetune, seed, ckpt)
        train += [*row.flags, *start_from(pruned)]
        out.append(Job(f"{name}/train", train, os.path.join(d, "train.log"), [f"{name}/prune"], updates=finetune))
    elif row.key == "cgap":  # K N + N' = U; the learning rate restarts at every step (GaP appendix B)
        steps, per_step, finetune = budget.cgap()
        warmup = max(1, round(budget.warmup_updates * per_step / budget.updates))  # the same share of a step
        train = training(data, PLUGIN_TASK, smoke, budget, None, seed, ckpt,
                          scheduler=("--lr-scheduler", "gap_inverse_sqrt"), warmup=warmup)
        train += [*row.flags, "--gap-step-updates", str(per_step), "--gap-steps", str(steps),
                  "--gap-finetune-updates", str(finetune), "--max-epoch", "0"]
        out.append(Job(f"{name}/train", train, os.path.join(d, "train.log"), updates=budget.updates))
    else:
        task = "translation" if row.method == "vanilla" else PLUGIN_TASK
        train = training(data, task, smoke, budget, length, seed, ckpt) + list(row.flags)
        if row.distill_start is not None:
            train += ["--core-distill-start", str(round(row.distill_start * budget.updates))]
        out.append(Job(f"{name}/train", train, os.path.join(d, "train.log"), updates=length))
    trained = out[-1].name
    task = "translation" if row.method == "vanilla" else PLUGIN_TASK
    at_u = training_updates(row, budget, budget.updates)
    for network in row.networks:
        tested = [] if row.varies else [(at_u, "")] + ([(length, f"-{length}")] if length != budget.updates else [])
        for updates, suffix in tested:
            out.append(Job(f"{name}/test-{network}{suffix}",
                           generate(data, checkpoint_at(ckpt, updates), task, network, "test", 4, smoke),
                           os.path.join(d, f"generate-{network}{suffix}.txt"), [trained]))
        # a choice the papers leave open is compared at U only (the valid loss curve comes with its log)
        points = [] if not curves else [at_u] if row.varies else curve_updates(row, budget, length)
        for updates in points:
            out.append(Job(f"{name}/valid-{network}-{updates}",
                           generate(data, checkpoint_at(ckpt, updates), task, network, "valid", 1, smoke),
                           os.path.join(d, f"valid-{network}-{updates}.txt"), [trained]))
    return out


def training_updates(row: Row, budget: Budget, updates: int) -> int:
    """Update ``updates`` of the row's schedule in its training's own count (prune-from-dense counts its
    fine-tune from 0)."""
    return updates - budget.dense_updates() if row.method == "prune" else updates


def curve_updates(row: Row, budget: Budget, length: Optional[int] = None) -> List[int]:
    """The updates (the training's own count) at which a row's checkpoints are scored on the valid
    split: every interval up to U, every second interval beyond."""
    end = training_updates(row, budget, budget.updates)
    further = training_updates(row, budget, length or budget.updates)
    return list(range(budget.interval, end, budget.interval)) + [end] + list(
        range(end + 2 * budget.interval, further + 1, 2 * budget.interval))


def generate(data: str, checkpoint: str, task: str, network: str, subset: str, beam: int, smoke: bool) -> List[str]:
    options = ["--beam", str(beam), "--batch-size", "64", "--remove-bpe", "--max-len-a", "1.2", "--max-len-b", "10",
               "--cpu", "--num-workers", "0"]
    if network == "pruned":  # LayerDrop's network pruned at inference (fairseq's own pruning of the checkpoint)
        # fairseq's prune_state_dict drops every layer of a side it is given no list for: the encoder keeps all
        every = ",".join(map(str, range(LAYERS)))
        options += ["--model-overrides", str({"encoder_layers_to_keep": every, "decoder_layers_to_keep": LAYERDROP_KEEP})]
    argv = [*recipe.PROGRAMS["fairseq-generate"], *recipe.generate(data, task, checkpoint, subset, options, network)]
    if smoke:
        argv += ["--max-len-a", "0", "--max-len-b", "8"]
    return argv


def prepare_data(output: str, prog: str, limit: int = 0) -> str:
    """The bundled Bible corpus binarized into OUTPUT/data-bin (data-prep/prepare_bible.py), unless it is there."""
    data = os.path.join(output, "data-bin")
    if not os.path.isfile(os.path.join(data, f"dict.{TGT}.txt")):
        argv = [sys.executable, os.path.join(ROOT, "data-prep", "prepare_bible.py"),
                "--output", os.path.join(output, "text"), "--binarize", data]
        runner.run_logged(prog, f"preparing the Bible corpus into {data}",
                          argv + (["--limit", str(limit)] if limit else []), os.path.join(output, "prepare.log"))
    return data
