"""The one interface both methods implement: partial SGD (ATS paper, Algorithm 2; docs/design.md).

At every update t a method says which part of the model takes part in the forward pass (the forward
mask: it sets the model's level or masks) and which part the optimizer may change (the update mask:
a list aligned with the optimizer's parameters, applied by ``adam_for_partitioned_model``). The task's
fairseq hooks do nothing but call these methods, in this order:

    build_model      once per model: partition it (ATS) or mask it (GaP); resume_from before, when
                     a training run resumes from a checkpoint
    begin_epoch      at the start of every training epoch
    begin_update     at every micro-batch of update t (idempotent within the update): forward mask
    update_mask      the update mask of update t, handed to the optimizer before its gradient norm
    training_criterion
                     the criterion of a micro-batch of update t (the task's own, or one that wraps it)
    lr_coef          the learning-rate multiplier of update t
    begin_validation before a validation; valid_step / reduce_metrics add the method's metrics
    begin_inference  before generating with the models
    state_dict / load_state_dict
                     the method's state, in the checkpoint's task state (``checkpoints.py``)

A method keeps its state itself (levels, masks' schedule, values set aside): the layers hold only
weights and masks.
"""
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

Mask = Union[bool, torch.Tensor]


class TrainingMethod:
    name: str = ""

    def resume_from(self, path: str, checkpoint: dict):
        """A training run resumes from ``checkpoint`` (read from ``path``): check that it fits this
        run (one-line error otherwise) and take the method's state from it."""

    def build_model(self, model: nn.Module, from_checkpoint: bool) -> nn.Module:
        raise NotImplementedError

    def begin_epoch(self, epoch: int, model: nn.Module):
        pass

    def begin_update(self, model: nn.Module, optimizer, update_num: int):
        raise NotImplementedError

    def update_mask(self, model: nn.Module, update_num: int) -> Optional[List[Mask]]:
        """Per trainable parameter of ``model`` (in order): True, False or a bool tensor; None: all."""
        raise NotImplementedError

    def lr_coef(self, update_num: int) -> float:
        return 1.0

    def training_criterion(self, model: nn.Module, criterion, update_num: int):
        """What the training step of update t calls as its criterion: ``criterion`` itself, or one that
        wraps it (ATS's in-place distillation, ``distillation.py``)."""
        return criterion

    def begin_validation(self, model: nn.Module):
        pass

    def valid_step(self, model: nn.Module, criterion, sample) -> Dict[str, float]:
        """Extra entries for the logging output of a validation batch (the model is in eval mode)."""
        return {}

    def reduce_metrics(self, logging_outputs: Sequence[dict]):
        pass

    def begin_inference(self, models: Sequence[nn.Module]):
        pass

    def alignment_setup(self, model: nn.Module, params: List[nn.Parameter]) -> Tuple[
            List[Mask], Callable[[], None], Callable[[], None]]:
        """For ATS Theorem 2's diagnostics: the update mask of ``params``, and how to set the model to
        the full network and to the masked one."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict):
        pass
