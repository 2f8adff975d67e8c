"""The papers' tables as data: rows, the runs each cell needs, the published numbers, the recipes.

ATS (Mohtashami, Jaggi, Stich, "Masked Training of Neural Networks with Partial Gradients", AISTATS
2022): Table 1a/1b (low-rank core, IWSLT14 / WMT17), Table 2a/2b (small-width core), trained with the
hyper-parameters of Table 3 (appendix C). Every row is standard training of the full network, standard
training of the core alone (``--max-level 1``) or alternating training (``--alternate``), which gives
both networks.

GaP (Ma et al., "Effective Model Sparsification by Scheduled Grow-and-Prune Methods", ICLR 2022):
Table 4 (C-GaP, P-GaP and prune-from-dense at 80%/90%, kappa = 3/6), Table 6 (kappa = 1/3/6), Table 8
(random partitions), Table 9 (1x8 blocks), WMT14 en-de, with appendix B.5's recipe.

A *run* is one training pipeline (one directory per seed under --output-dir); tables share runs (ATS
Tables 1a and 2a print the same standard Transformer, GaP Tables 4, 6 and 8 the same C-GaP 90% kappa=3
run), so a run is trained once. A *cell* names a run and the network evaluated: ``full``, ``core``
(``fairseq-generate --max-level 1``) or ``sparse`` (a GaP model). Published numbers are copied as
printed: "mean (std)" over the papers' seeds, or the single number they give.

Pure data: importing this module needs neither fairseq nor torch (``reproduce.py --dry-run`` and the
collector stay fast).
"""
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from harness.recipe import ADAM_098, KINDS, LABEL_SMOOTHING

# ---------------------------------------------------------------------------------------- data sets


@dataclass(frozen=True)
class Dataset:
    name: str
    data_dir: str  # the fairseq-preprocess output, under --data-root
    source: str
    target: str
    description: str
    gen_subset: str = "test"


DATASETS: Dict[str, Dataset] = {
    # fairseq's prepare-iwslt14.sh (data-prep/prepare_iwslt14.py): test = the 6750 sentences of its test split
    "iwslt14": Dataset("iwslt14", "iwslt14.tokenized.de-en", "de", "en", "IWSLT14 de-en"),
    # data-prep/prepare_wmt17_en_de.py (fairseq's prepare-wmt14en2de.sh): test = newstest2014
    "wmt17": Dataset("wmt17", "wmt17_en_de", "en", "de", "WMT17 en-de"),
    # the same script with --icml17: the WMT14 en-de training data, test = newstest2014
    "wmt14": Dataset("wmt14", "wmt14_en_de", "en", "de", "WMT14 en-de"),
}

# ------------------------------------------------------------------------------------------ recipes


@dataclass(frozen=True)
class Recipe:
    """One dataset's training recipe, split so that --smoke can swap the model and the lengths."""

    model: Tuple[str, ...]  # --arch and the embedding sharing
    training: Tuple[str, ...]  # optimizer options, criterion, regularization (not the lr scheduler)
    lr_scheduler: str  # plain runs; C-GaP uses gap_inverse_sqrt
    max_tokens: int
    max_epoch: int
    generate: Tuple[str, ...]  # fairseq-generate options besides the data, checkpoint and subset
    bleu: str  # "tokenized" (ATS: fairseq's BLEU) or "sacrebleu" (GaP: detokenized SacreBLEU)
    evaluation: Tuple[str, ...] = ()  # validation BLEU during training (GaP: best checkpoint by BLEU)


RECIPES: Dict[str, Recipe] = {
    # ATS Table 3, IWSLT14 column. transformer_iwslt_de_en is Table 3's shape (6+6 layers, d=512, FFN 1024,
    # 4 heads). Weight decay is not in Table 3: 1e-4 is fairseq's IWSLT14 recipe (docs/ats.md's command).
    "iwslt14": Recipe(
        model=("--arch", "transformer_iwslt_de_en", "--share-decoder-input-output-embed"),
        training=ADAM_098 + ("--weight-decay", "0.0001", "--lr", "0.0005", "--warmup-updates", "4000",
                             "--warmup-init-lr", "-1") + LABEL_SMOOTHING + ("--dropout", "0.3"),
        lr_scheduler="inverse_sqrt", max_tokens=12000, max_epoch=30,
        generate=("--beam", "5", "--remove-bpe", "--batch-size", "128"),
        bleu="tokenized",
    ),
    # ATS Table 3, WMT17 column: --arch transformer (8 heads, FFN 2048, share_decoder_input_output_embed
    # False). No weight decay (not in Table 3).
    "wmt17": Recipe(
        model=("--arch", "transformer"),
        training=ADAM_098 + ("--weight-decay", "0.0", "--lr", "0.0007", "--warmup-updates", "4000",
                             "--warmup-init-lr", "1e-07") + LABEL_SMOOTHING + ("--dropout", "0.1"),
        lr_scheduler="inverse_sqrt", max_tokens=18000, max_epoch=22,
        generate=("--beam", "5", "--remove-bpe", "--batch-size", "128"),
        bleu="tokenized",
    ),
    # GaP appendix B.5 (NVIDIA's Transformer recipe): "a batch size of 5120, inverse square-root scheduler
    # with an initial learning rate of 0.000846, and Adam"; Transformer-big, shared embeddings, fp16 as in
    # docs/gap.md's command. The official code trained on 8 GPUs of 5120 tokens each: --update-freq 8 keeps
    # that batch on one GPU per run (on 8 GPUs per run, drop it). Beam 4 as NVIDIA's recipe.
    "wmt14": Recipe(
        model=("--arch", "transformer_wmt_en_de_big_t2t", "--share-all-embeddings"),
        training=("--adam-betas", "(0.9, 0.997)", "--adam-eps", "1e-09", "--weight-decay", "0.0",
                  "--lr", "0.000846", "--warmup-updates", "4000", "--warmup-init-lr", "0.0")
        + LABEL_SMOOTHING + ("--dropout", "0.1", "--fp16", "--update-freq", "8"),
        lr_scheduler="inverse_sqrt", max_tokens=5120, max_epoch=40,
        generate=("--beam", "4", "--remove-bpe", "--batch-size", "128"),
        bleu="sacrebleu",
        evaluation=("--eval-bleu", "--eval-bleu-detok", "moses", "--eval-bleu-remove-bpe",
                    "--eval-bleu-args", '{"beam": 4}', "--best-checkpoint-metric", "bleu",
                    "--maximize-best-checkpoint-metric"),
    ),
}

# GaP appendix B.5: "Each step in GaP includes 10 epochs of training, and the final fine-tuning includes
# 40 epochs. We pretrain a dense model using 40 epochs." Sec. 3.4: the best model "within 30 GaP steps".
# The official code (boone891214/GaP, Transformer/scripts/multi_round_gap/...): C-GaP runs one step, then
# 10 rounds of kappa steps (31 steps for kappa = 3, 61 for kappa = 6), each step its own process, and
# branches a 40-epoch fine-tune from the end of every round; P-GaP runs 10 rounds, each worker a node
# of 8 GPUs x 5120 tokens, and fine-tunes every round's combined model.
GAP_STEP_EPOCHS = 10
GAP_ROUNDS = 10
GAP_FINETUNE_EPOCHS = 40
GAP_PRETRAIN_EPOCHS = 40


def gap_steps(kappa: int) -> int:
    """C-GaP's steps in the official code: 1 + GAP_ROUNDS rounds of kappa steps."""
    return 1 + GAP_ROUNDS * kappa

# -------------------------------------------------------------------------------------------- runs

# method: how the run is trained
#   vanilla  fairseq's own translation task and Adam: a standard Transformer (ATS "Standard Training")
#   ats      the plugin's task: --max-level 1 (the core alone) or --alternate (ATS)
#   dense    the dense pretrain of prune-from-dense (fairseq's translation task, GaP B.5)
#   prune    fairseq-partitioned-prune of the dense pretrain, then a fixed-mask fine-tune
#   cgap     C-GaP in one fairseq-train (--alternate --gap-*)
#   pgap     P-GaP with fairseq-partitioned-pgap
METHODS = ("vanilla", "ats", "dense", "prune", "cgap", "pgap")


@dataclass(frozen=True)
class Run:
    id: str
    dataset: str
    method: str
    flags: Tuple[str, ...] = ()  # the method's own fairseq-train flags
    networks: Tuple[str, ...] = ("full",)
    after: Optional[str] = None  # the run whose checkpoint this one starts from


RUNS: Dict[str, Run] = {}


def _add(run: Run) -> str:
    assert run.method in METHODS and run.dataset in DATASETS, run
    assert RUNS.setdefault(run.id, run) == run, f"run {run.id} defined twice, differently"
    return run.id


def ats_standard(dataset: str) -> str:
    return _add(Run(f"ats-{dataset}-standard", dataset, "vanilla"))


def ats_core(dataset: str, kind: str, r: str) -> str:
    flags = ("--partitioned-linear-module-name", KINDS[kind], "--small-ratio", r, "--max-level", "1")
    return _add(Run(f"ats-{dataset}-{kind}-r{r}-core", dataset, "ats", flags, ("core",)))


def ats_alternate(dataset: str, kind: str, r: str) -> str:
    # Table 3: alternate_lr_coef 1.0
    flags = ("--partitioned-linear-module-name", KINDS[kind], "--small-ratio", r,
             "--alternate", "--alternate-lr-coef", "1.0")
    return _add(Run(f"ats-{dataset}-{kind}-r{r}-alternate", dataset, "ats", flags, ("full", "core")))


def gap_mask_flags(sparsity: str, distribution="uniform", granularity="unstructured"):
    flags = ("--gap-sparsity", sparsity)
    if distribution != "uniform":
        flags += ("--gap-distribution", distribution)
    if granularity != "unstructured":
        flags += ("--gap-granularity", granularity)
    return flags


def _gap_suffix(distribution, granularity):
    return ("-nonuniform" if distribution != "uniform" else "") + (
        "-" + granularity.replace("-", "") if granularity != "unstructured" else "")


def gap_dense() -> str:
    return _add(Run("gap-dense", "wmt14", "dense", (), ("full",)))


def gap_prune(sparsity: str, granularity="unstructured") -> str:
    run_id = f"gap-prune-s{sparsity}{_gap_suffix('uniform', granularity)}"
    return _add(Run(run_id, "wmt14", "prune", gap_mask_flags(sparsity, granularity=granularity), ("sparse",),
                    after=gap_dense()))


def gap_cgap(sparsity: str, kappa: int, strategy="cyclic", distribution="uniform", granularity="unstructured"):
    # --alternate: grow and prune (without it the masks stay fixed)
    flags = ("--alternate",) + gap_mask_flags(sparsity, distribution, granularity) + ("--gap-partitions", str(kappa))
    if strategy != "cyclic":
        flags += ("--gap-partition-strategy", strategy)
    run_id = f"gap-cgap-s{sparsity}-k{kappa}" + ("-random" if strategy != "cyclic" else "") + _gap_suffix(
        distribution, granularity)
    return _add(Run(run_id, "wmt14", "cgap", flags, ("sparse",)))


def gap_pgap(sparsity: str, kappa: int) -> str:
    flags = gap_mask_flags(sparsity) + ("--gap-partitions", str(kappa))
    return _add(Run(f"gap-pgap-s{sparsity}-k{kappa}", "wmt14", "pgap", flags, ("sparse",)))


# ------------------------------------------------------------------------------------------ tables


@dataclass(frozen=True)
class Cell:
    run: str
    network: str  # full | core | sparse
    paper: Optional[str]  # as printed in the paper


@dataclass(frozen=True)
class Row:
    key: str  # for reproduce.py --rows
    label: str  # as in the paper
    cells: Dict[str, Cell] = field(default_factory=dict)  # column -> cell; absent: "-" in the paper


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    dataset: str
    columns: Tuple[str, ...]
    rows: Tuple[Row, ...]
    notes: Tuple[str, ...] = ()

    @property
    def bleu(self) -> str:
        return RECIPES[self.dataset].bleu

    def runs(self):
        """The run ids of this table, in row order, each once."""
        return list(dict.fromkeys(c.run for row in self.rows for c in row.cells.values()))


SUB, FULL = "Sub-Network", "Full Network"


def _ats_rows(dataset: str, kind: str, standard_full: str, entries) -> Tuple[Row, ...]:
    """entries: (r, standard sub-network, alternating sub-network, alternating full network), as printed."""
    rows = [Row("standard", "Standard Training", {FULL: Cell(ats_standard(dataset), "full", standard_full)})]
    for r, std_sub, alt_sub, alt_full in entries:
        if std_sub is not None:
            rows.append(Row(f"std-r{r}", f"Standard Training (r = {r})",
                            {SUB: Cell(ats_core(dataset, kind, r), "core", std_sub)}))
        if alt_sub is not None:
            alternate = ats_alternate(dataset, kind, r)
            rows.append(Row(f"alt-r{r}", f"Alternating Training (r = {r})",
                            {SUB: Cell(alternate, "core", alt_sub), FULL: Cell(alternate, "full", alt_full)}))
    return tuple(rows)


ATS_COLUMNS = (SUB, FULL)
ATS_NOTE = "Sub-Network: the core (fairseq-generate --max-level 1); Full Network: the full network."

TABLES: Dict[str, Table] = {}


def _table(table: Table):
    TABLES[table.name] = table


_table(Table(
    "ats-1a", "ATS Table 1a: Transformer with its low-rank variant, IWSLT14 de-en", "iwslt14", ATS_COLUMNS,
    _ats_rows("iwslt14", "rank", "32.48 (0.32)", [
        ("0.25", "28.96 (0.04)", "29.15 (0.63)", "31.34 (0.36)"),
        ("0.125", "27.87 (0.11)", "28.20 (0.48)", "31.62 (0.13)"),
        ("0.03125", "17.95 (3.65)", "24.03 (0.77)", "31.20 (0.58)"),
    ]),
    (ATS_NOTE, "The full network of alternating training is the super-network V U + W, converted to a "
               "standard Transformer for its parameter count."),
))
_table(Table(
    "ats-1b", "ATS Table 1b: Transformer with its low-rank variant, WMT17 en-de", "wmt17", ATS_COLUMNS,
    _ats_rows("wmt17", "rank", "26.41 (0.14)", [
        ("0.03125", "23.20 (0.09)", "23.18 (0.12)", "25.50 (0.22)"),
        ("0.015625", "22.10", None, None),
    ]),
    (ATS_NOTE, "r = 0.015625 (footnote a): roughly the parameters of the small-width core with r = 0.03125 "
               "(Table 2b), for comparing low-rank and low-width networks; one number, no std."),
))
_table(Table(
    "ats-2a", "ATS Table 2a: Transformer with its small-width sub-network, IWSLT14 de-en", "iwslt14",
    ATS_COLUMNS,
    _ats_rows("iwslt14", "width", "32.48 (0.32)", [
        ("0.25", "31.29 (0.27)", "31.59 (0.18)", "31.95 (0.35)"),
        ("0.03125", "23.58 (0.58)", "23.84 (0.25)", "30.41 (0.40)"),
    ]),
    (ATS_NOTE,),
))
_table(Table(
    "ats-2b", "ATS Table 2b: Transformer with its small-width sub-network, WMT17 en-de", "wmt17", ATS_COLUMNS,
    _ats_rows("wmt17", "width", "26.41 (0.14)", [
        ("0.03125", "20.47 (0.34)", "20.08 (0.40)", "25.46 (0.17)"),
    ]),
    (ATS_NOTE,),
))

GAP4_COLUMNS = ("80% k=3", "80% k=6", "90% k=3", "90% k=6")


def _gap4_rows() -> Tuple[Row, ...]:
    dense = Cell(gap_dense(), "full", "27.6")
    prune = {"0.8": Cell(gap_prune("0.8"), "sparse", "27.1"), "0.9": Cell(gap_prune("0.9"), "sparse", "25.7")}
    cgap = {("0.8", 3): "27.6", ("0.8", 6): "27.6", ("0.9", 3): "27.7", ("0.9", 6): "27.1"}
    pgap = {("0.8", 3): "27.9", ("0.8", 6): "27.7", ("0.9", 3): "27.3", ("0.9", 6): "26.9"}

    def column(s, k):
        return f"{int(float(s) * 100)}% k={k}"

    keys = [(s, k) for s in ("0.8", "0.9") for k in (3, 6)]
    return (
        # The paper's dense row is NVIDIA's model (one number across the table); ours is the 40-epoch pretrain.
        Row("dense", "Dense (NVIDIA, 2020a)", {c: dense for c in GAP4_COLUMNS}),
        # prune-from-dense does not depend on kappa: one number per sparsity, spanning both columns
        Row("prune", "Prune-from-dense", {column(s, k): prune[s] for s, k in keys}),
        Row("cgap", "C-GaP", {column(s, k): Cell(gap_cgap(s, k), "sparse", cgap[s, k]) for s, k in keys}),
        Row("pgap", "P-GaP", {column(s, k): Cell(gap_pgap(s, k), "sparse", pgap[s, k]) for s, k in keys}),
    )


GAP_NOTES = ("kappa (k): number of partitions. The paper reports the best SacreBLEU on the validation data "
             "within 30 GaP steps; here the best checkpoint (by validation BLEU) is translated on --gen-subset.",)

_table(Table(
    "gap-4", "GaP Table 4: sparse Transformer, WMT14 en-de (uniform sparsity)", "wmt14", GAP4_COLUMNS,
    _gap4_rows(),
    GAP_NOTES + ("Dense: the paper prints NVIDIA's model (27.6); here the 40-epoch dense pretrain of B.5.",
                 "Prune-from-dense: one-shot magnitude pruning of the dense pretrain, 40-epoch fine-tune; "
                 "one number per sparsity (both kappa columns)."),
))
_table(Table(
    "gap-6", "GaP Table 6: number of partitions, C-GaP 90% uniform, WMT14 en-de", "wmt14", ("SacreBLEU",),
    tuple(Row(f"k{k}", f"C-GaP 90% uniform, kappa = {k}", {"SacreBLEU": Cell(gap_cgap("0.9", k), "sparse", p)})
          for k, p in ((1, "26.8"), (3, "27.7"), (6, "27.1"))),
    GAP_NOTES,
))
_table(Table(
    "gap-8", "GaP Table 8: partition strategies, C-GaP 90%, kappa = 3, WMT14 en-de", "wmt14", ("SacreBLEU",),
    (
        Row("cyclic", "C-GaP 90% uniform, cyclic", {"SacreBLEU": Cell(gap_cgap("0.9", 3), "sparse", "27.7")}),
        Row("random", "C-GaP 90% uniform, random",
            {"SacreBLEU": Cell(gap_cgap("0.9", 3, "random"), "sparse", "27.0")}),
        Row("random-nonuniform", "C-GaP 90% non-uniform, random",
            {"SacreBLEU": Cell(gap_cgap("0.9", 3, "random", "non-uniform"), "sparse", "26.9")}),
    ),
    GAP_NOTES,
))
_table(Table(
    "gap-9", "GaP Table 9: 1x8 block sparsity, 80%, WMT14 en-de", "wmt14", ("BLEU",),
    (
        Row("prune", "prune-from-dense, 80%, block 1x8",
            {"BLEU": Cell(gap_prune("0.8", "block-1x8"), "sparse", "26.1")}),
        Row("cgap", "C-GaP, 80%, block 1x8, kappa = 3",
            {"BLEU": Cell(gap_cgap("0.8", 3, granularity="block-1x8"), "sparse", "27.2")}),
    ),
    GAP_NOTES + ("The table prints 26.1 and 27.2; the text of A.3 says 26.21 vs. 27.21 (SacreBLEU).",),
))
