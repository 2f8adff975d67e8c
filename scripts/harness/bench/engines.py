"""The two engines scripts/deploy_benchmark.py times: fairseq-generate and CTranslate2, on the same batches.

- ``FairseqEngine``: what ``fairseq-generate`` does with its command line (``fairseq_cli.generate``):
  the task, model and generator set up from it (``in_process.generator``), and one
  ``task.inference_step`` per batch (the plugin's task evaluates the level the command asks for).
- ``CTranslate2Engine``: a ``ctranslate2.Translator`` on one CPU thread, ``translate_batch`` per batch
  with fairseq-generate's settings: the beam, length penalty 1, at least one token, and fairseq's
  length limit ``int(a * S + b)`` for the batch's padded source length S.

Both take a ``Batch`` (the fairseq sample and the same sentences as tokens) and return, in the batch's
order, each sentence's hypothesis as tokens joined by spaces (BPE kept); ``score`` gives each reference's
log-probability (natural log, EOS included) under the network, teacher-forced.
"""
from dataclasses import dataclass
from typing import List

import torch

from harness import in_process


@dataclass
class Batch:
    sample: dict  # fairseq's collated sample (sentences in the collater's order)
    ids: List[int]  # sentence ids, in the order of ``sources``
    sources: List[List[str]]  # the source sentences as tokens, without EOS
    targets: List[List[str]]  # their references as tokens, without EOS
    max_len: int  # fairseq's limit for this batch: int(max_len_a * padded source length + max_len_b)


def batches(dataset, src_dict, ids: List[int], size: int, max_len_a: float, max_len_b: int) -> List[Batch]:
    """``ids`` cut into batches of ``size`` sentences, in the order given."""
    out = []
    for start in range(0, len(ids), size):
        chunk = ids[start:start + size]
        sample = dataset.collater([dataset[i] for i in chunk])
        sources = [src_dict.string(dataset[i]["source"]).split() for i in chunk]
        targets = [dataset.tgt_dict.string(dataset[i]["target"]).split() for i in chunk]
        max_len = int(max_len_a * sample["net_input"]["src_tokens"].size(1) + max_len_b)
        out.append(Batch(sample, chunk, sources, targets, max_len))
    return out


class FairseqEngine:
    def __init__(self, argv: List[str]):
        """``argv``: a fairseq-generate command line (without the program name). One engine per beam:
        ``prepare_for_inference_`` sizes the model's attention for the command's beam."""
        cfg, self.task, self.models, self.generator = in_process.generator(argv)
        self.beam = cfg.generation.beam
        self.tgt_dict = self.task.target_dictionary

    def translate(self, batch: Batch, beam: int) -> List[str]:
        assert beam == self.beam, (beam, self.beam)
        hypos = self.task.inference_step(self.generator, self.models, batch.sample)
        by_id = {int(i): self.tgt_dict.string(h[0]["tokens"].int()) for i, h in zip(batch.sample["id"], hypos)}
        return [by_id[i] for i in batch.ids]

    def score(self, batch: Batch) -> List[float]:
        model = self.models[0]
        with torch.no_grad():
            lprobs = model.get_normalized_probs(model(**batch.sample["net_input"]), log_probs=True)  # (B, T, V)
        target = batch.sample["target"]
        picked = lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1).masked_fill(target == self.tgt_dict.pad(), 0)
        by_id = {int(i): float(row.sum()) for i, row in zip(batch.sample["id"], picked)}
        return [by_id[i] for i in batch.ids]


class CTranslate2Engine:
    def __init__(self, model_dir: str):
        import ctranslate2

        self.translator = ctranslate2.Translator(model_dir, device="cpu", intra_threads=1, inter_threads=1)

    def translate(self, batch: Batch, beam: int) -> List[str]:
        results = self.translator.translate_batch(
            batch.sources, beam_size=beam, length_penalty=1.0, min_decoding_length=1,
            max_decoding_length=batch.max_len)
        return [" ".join(r.hypotheses[0]) for r in results]

    def score(self, batch: Batch) -> List[float]:
        return [sum(r.log_probs) for r in self.translator.score_batch(batch.sources, batch.targets)]
