"""BLEU of a fairseq-generate output file (generate-*.txt), under the papers' two conventions.

- ``tokenized`` (the ATS paper): fairseq's tokenized BLEU-4, computed from the H- and T- lines of
  fairseq-generate (BPE removed, the data's Moses tokenization kept), with sacrebleu's tokenize='none'
  and no smoothing: the n-gram counts of fairseq-score (fairseq's C scorer now and then counts a
  spurious match that depends on dictionary order; measured here: < 0.01 BLEU apart from
  fairseq-generate's BLEU4). German outputs are compound-split first, as fairseq's examples/translation
  compound_split_bleu.sh does (perl -ple 's{(\\S)-(\\S)}{$1 ##AT##-##AT## $2}g' on hypotheses and
  references).
- ``sacrebleu`` (the GaP paper): detokenized SacreBLEU (13a, with its signature): the D- (hypothesis)
  and T- (reference) lines detokenized with sacremoses' MosesDetokenizer. The reference is the
  detokenized test side of the binarized data, not the raw test file (close to it, not byte-identical).
  ``sacrebleu-uncased``: the same, lowercased (``sacrebleu -lc``: the official GaP code's BLEU).

    score("runs/RUN/seed1/generate-full.txt", "tokenized", lang="de")  # -> Score(bleu, signature)
"""
import os
import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

CONVENTIONS = ("tokenized", "sacrebleu", "sacrebleu-uncased")
COMPOUND = re.compile(r"(\S)-(\S)")


@dataclass
class Output:
    hypotheses: List[str]  # H-: tokenized, BPE removed
    detokenized: List[str]  # D-: the same without --tokenizer (detokenized here)
    references: List[str]  # T-


@dataclass
class Score:
    bleu: float
    signature: Optional[str] = None  # sacreBLEU's (the sacrebleu convention)


def read_generate(path: str) -> Optional[Output]:
    """The sentences of a fairseq-generate output, by sentence id; None if absent or cut short (no
    final "Generate ... BLEU" line)."""
    if not os.path.isfile(path):
        return None
    hyp, detok, ref = {}, {}, {}
    complete = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("Generate ") and "BLEU" in line:
                complete = True
            tag, _, rest = line.partition("\t")
            if len(tag) < 3 or tag[1] != "-" or not tag[2:].isdigit():
                continue
            i = int(tag[2:])
            if tag[0] == "T":
                ref[i] = rest
            elif tag[0] in "HD":
                (hyp if tag[0] == "H" else detok)[i] = rest.partition("\t")[2]  # after the score
    if not complete or not hyp or set(hyp) != set(ref):
        return None
    ids = sorted(hyp)
    return Output([hyp[i] for i in ids], [detok.get(i, hyp[i]) for i in ids], [ref[i] for i in ids])


def score(path: str, convention: str, lang: str) -> Optional[Score]:
    """BLEU of the fairseq-generate output ``path`` (target language ``lang``) under ``convention``;
    None if the file is absent or cut short."""
    out = read_generate(path)
    if out is None:
        return None
    if convention == "tokenized":
        return Score(tokenized_bleu(out, compound=lang == "de"))
    return Score(*sacrebleu_bleu(out, lang, lowercase=convention == "sacrebleu-uncased"))


def compound_split(line: str) -> str:
    return COMPOUND.sub(r"\1 ##AT##-##AT## \2", line)


def tokenized_bleu(out: Output, compound: bool) -> float:
    from sacrebleu.metrics import BLEU

    hyps, refs = out.hypotheses, out.references
    if compound:
        hyps, refs = [compound_split(h) for h in hyps], [compound_split(r) for r in refs]
    return BLEU(tokenize="none", smooth_method="none", force=True).corpus_score(hyps, [refs]).score


def sacrebleu_bleu(out: Output, lang: str, lowercase: bool = False) -> Tuple[float, str]:
    from sacrebleu.metrics import BLEU
    from sacremoses import MosesDetokenizer

    detok = MosesDetokenizer(lang=lang)
    hyps = [detok.detokenize(h.split()) for h in out.detokenized]
    refs = [detok.detokenize(r.split()) for r in out.references]
    metric = BLEU(lowercase=lowercase)
    return metric.corpus_score(hyps, [refs]).score, str(metric.get_signature())


def describe(convention: str, compound: bool) -> str:
    """The convention in words, for a table's header (sacrebleu: the signature is to follow)."""
    if convention == "tokenized":
        split = "; compound-split (##AT##-##AT##) as fairseq's compound_split_bleu.sh for WMT en-de"
        return ("fairseq's tokenized BLEU-4 (as the ATS paper): H-/T- lines, BPE removed, sacrebleu "
                "tokenize=none, no smoothing (fairseq-score's counts)" + (split if compound else ""))
    case = "uncased (as the official GaP code: sacrebleu -lc)" if convention == "sacrebleu-uncased" else "cased"
    return (f"detokenized SacreBLEU, {case}: D-/T- lines detokenized with sacremoses MosesDetokenizer; "
            "signature ")
