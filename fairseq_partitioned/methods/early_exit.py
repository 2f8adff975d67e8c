"""The depth core from every update: the full network's and the core's losses from one forward pass.

A depth core (``--core-decoder-layers K``, ``modules/partitioned_decoder_layers.py``) is an early exit of
the full network: its output is the decoder's state after layer K, which the full network's own forward
computes on its way (``extra["inner_states"][K]``). So its loss costs one more output projection, and
every update can train both networks, where ``--alternate`` gives each half the updates: the early-exit
loss of the Depth-Adaptive Transformer (Elbayad et al., ICLR 2020) and of LayerSkip (Elhoushi et al.,
2024); MatFormer (Devvrit et al., 2023) also trains all its nested models at every step. With
w = ``--core-loss-weight``, every update minimises

    loss = criterion(z_full) + w * criterion(z_core),    z_core = exit_logits(decoder, inner_states[K])

and its update mask is every parameter. In eval mode z_core is exactly the core's own forward (level 1).
With ``--core-distill ALPHA`` (from ``--core-distill-start`` on) the core's term is that of ATS's
in-place distillation (``distillation.py``), its teacher the full network's distribution from the same
training forward, detached: no second teacher pass, so with the full forward's dropout
(``--core-distill-teacher-dropout`` has no meaning here).

Logging keeps fairseq's meaning: ``loss`` and ``nll_loss`` are the criterion's on the full network;
``core_loss`` and ``core_nll_loss`` the core's, ``distill_loss`` as with ATS.
"""
from ..errors import UsageError
from ..modules import exit_logits
from .distillation import DISTILL_KEY, CoreDistillation, criterion_and_output, unwrapped


def check_early_exit_config(cfg):
    """One-line errors for a weight out of range and the combinations it does not support."""
    weight = cfg.core_loss_weight
    if weight < 0:
        raise UsageError(f"--core-loss-weight must be >= 0 (0 = off), got {weight}")
    if weight == 0:
        return
    if not cfg.core_decoder_layers:
        raise UsageError("--core-loss-weight reads the core's output from the full network's forward: it needs a depth "
                         "core, --core-decoder-layers K (a low-rank or small-width core would need a second forward)")
    if cfg.alternate:
        raise UsageError("--core-loss-weight trains both networks at every update, --alternate in turns: drop one")
    if cfg.alternate_lr_coef != 1.0:
        raise UsageError("--alternate-lr-coef scales the core updates of --alternate; with --core-loss-weight every "
                         "update trains both networks: drop it")
    if cfg.core_distill_teacher_dropout:
        raise UsageError("--core-distill-teacher-dropout has no effect with --core-loss-weight: the teacher is the "
                         "full network's own training forward, with its dropout")


def check_both_networks(cfg):
    """A training run with --core-loss-weight trains the full network and its core (checked when it builds
    its model: evaluating or exporting its checkpoint may set --max-level)."""
    if cfg.core_loss_weight > 0 and cfg.max_level is not None:
        raise UsageError(f"--core-loss-weight trains the full network and its core: drop --max-level {cfg.max_level}")


class EarlyExitCriterion:
    """Called as fairseq's ``train_step`` calls a criterion: ``(model, sample) -> loss, sample_size, log``."""

    def __init__(self, criterion, weight: float, core_layers: int, distill: CoreDistillation, distilling: bool):
        self.criterion, self.weight, self.core_layers = criterion, weight, core_layers
        self.distill, self.distilling = distill, distilling

    def __call__(self, model, sample):
        net = unwrapped(model)
        if getattr(net.decoder, "adaptive_softmax", None) is not None:
            raise UsageError("--core-loss-weight needs the decoder's logits: drop --adaptive-softmax-cutoff")
        (loss, sample_size, logging_output), (logits, extra) = criterion_and_output(
            self.criterion, model, sample, "--core-loss-weight")
        core_output = (exit_logits(net.decoder, extra["inner_states"][self.core_layers]), extra)
        core_loss, core_nll_loss = self.criterion.compute_loss(net, core_output, sample, reduce=True)
        logging_output["core_loss"], logging_output["core_nll_loss"] = core_loss.data, core_nll_loss.data
        if self.distilling:
            soft = self.distill.soft_loss(core_output[0], self.distill.targets(logits, self.criterion), sample,
                                          self.criterion)
            logging_output[DISTILL_KEY] = soft.data
            core_loss = self.distill.mix(core_loss, soft)
        return loss + self.weight * core_loss, sample_size, logging_output
