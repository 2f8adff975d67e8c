#!/usr/bin/env python3
"""English-Spanish Bible verses (KJV - Reina-Valera 1909, data-prep/bible/kjv-rv1909/, made by
build_bible_corpus.py) through the IWSLT recipe's steps (fairseq's prepare-iwslt14.sh, as in
prepare_iwslt14.py / prepare_parallel.py): a real corpus of about 30,000 sentence pairs that a small
Transformer learns in CPU minutes.

  train: tokenizer.perl -l L (no -a, no punctuation normalization, as the IWSLT recipe);
         clean-corpus-n -ratio 1.5, 1-175 words; lowercase (--cased: keep the case)
  valid, test: tokenizer, lowercase, no cleaning (as the recipe treats its test sets)
  BPE: 8000 joint subword-nmt merges (--bpe-tokens) learned on train.en + train.es, applied to all
       splits. 8000 rather than IWSLT's 10000 (for 160k pairs): the training verses hold only about
       12k English and 27k Spanish lowercased token types (half of the Spanish ones seen once), so
       8000 merges keep the frequent words whole, split the rare names and inflections into pieces
       seen in training, and give a joint dictionary of 7840 types, small enough for a CPU model.
  Then, with --binarize, fairseq-preprocess --joined-dictionary (one dictionary, so
  --share-all-embeddings works; dict.en.txt and dict.es.txt are the same file).
Input: the shipped {train,valid,test}.{en,es}.xz, or --corpus DIR with a rebuilt copy (plain or .xz).
--limit N takes the first N pairs of each split (a quick run, for tests).
Output: OUTPUT/{train,valid,test}.{SRC,TGT}, OUTPUT/code, OUTPUT/tmp/ (the text before BPE).

  python data-prep/prepare_bible.py --output data/bible-en-es --binarize data-bin/bible-en-es
"""
import argparse
import itertools
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import moses  # noqa: E402
from prepare_iwslt14 import CLEAN  # noqa: E402

PROG = "prepare_bible"
CORPUS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bible", "kjv-rv1909")
LANGS = ("en", "es")
SPLITS = ("train", "valid", "test")
BPE_TOKENS = 8000


def check_corpus(corpus, limit=None):
    """{split: pairs used}; both sides of every split present, non-empty and of equal length."""
    if not os.path.isdir(corpus):
        raise common.PrepError(f"no such folder: {corpus}")
    pairs = {}
    for split in SPLITS:
        paths = [common.find_input(os.path.join(corpus, f"{split}.{lang}")) for lang in LANGS]
        counts = [common.count_lines(path) for path in paths]
        common.check_parallel(*counts, *paths)
        pairs[split] = min(counts[0], limit) if limit else counts[0]
    return pairs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="output folder for the BPE'd text")
    parser.add_argument("--corpus", default=CORPUS_DIR, help="folder with {train,valid,test}.{en,es}[.xz] "
                        "(default: the shipped data-prep/bible/kjv-rv1909)")
    parser.add_argument("--src", default="en", choices=LANGS, help="source language (default en; tgt: the other)")
    parser.add_argument("--cased", action="store_true", help="do not lowercase (the IWSLT recipe does)")
    parser.add_argument("--bpe-tokens", type=int, default=BPE_TOKENS, help="BPE merges to learn (default %(default)s)")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N pairs of each split")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="processes for tokenization, BPE and fairseq-preprocess (default: up to 8)")
    parser.add_argument("--binarize", metavar="DEST", help="then run fairseq-preprocess --joined-dictionary into DEST")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if args.bpe_tokens < 1:
        parser.error("--bpe-tokens must be at least 1")
    args.joined_dictionary = True  # for common.finish
    src, tgt = args.src, LANGS[1 - LANGS.index(args.src)]

    pairs = check_corpus(args.corpus, args.limit)
    tmp = os.path.join(args.output, "tmp")
    os.makedirs(tmp, exist_ok=True)
    lowercase = not args.cased

    common.log(PROG, f"tokenizing {pairs['train']} train, {pairs['valid']} valid, {pairs['test']} test pairs "
                     f"from {args.corpus}...")
    for split in SPLITS:
        train = split == "train"
        for lang in (src, tgt):
            lines = itertools.islice(common.iter_lines(os.path.join(args.corpus, f"{split}.{lang}")), pairs[split])
            out = os.path.join(tmp, f"train.tok.{lang}" if train else f"{split}.{lang}")
            # train: lowercase after clean-corpus-n, in the recipe's order.
            common.process_file(lines, out, moses.LineSteps(lang, lowercase=lowercase and not train), args.workers)
    common.log(PROG, "clean-corpus-n on train...")
    cleaned = os.path.join(tmp, "train.clean" if lowercase else "train")
    kept = moses.clean_files(os.path.join(tmp, "train.tok"), src, tgt, cleaned, **CLEAN,
                             lowercase_prefix=os.path.join(tmp, "train") if lowercase else None)
    if kept == 0:
        raise common.PrepError("no sentence pair of the training data is left after clean-corpus")
    common.log(PROG, f"train: {kept} of {pairs['train']} pairs kept by clean-corpus-n")

    common.log(PROG, f"BPE ({args.bpe_tokens} joint merges)...")
    common.bpe_splits(tmp, args.output, (src, tgt), SPLITS, merges=args.bpe_tokens, workers=args.workers)
    common.finish(PROG, args, (src, tgt))


if __name__ == "__main__":
    # Known third-party deprecation warnings (torch, fairseq, sacremoses, subword-nmt) are not the user's concern.
    for module in ("torch", "fairseq", "sacremoses", "subword_nmt"):
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
    common.run_main(PROG, main)
