#!/usr/bin/env python3
"""A small real German-English data set for tests and the CPU quickstart, made from the IWSLT'14
XML files shipped in data-prep/sample/iwslt14-de-en/ (see data-prep/sample/README.md), with the
steps of prepare_iwslt14.py / fairseq's prepare-iwslt14.sh and the official BPE codes.

Split (whole talks; the real training data is not shipped):
  train = IWSLT14.TED.tst2010 + TED.tst2011 + TED.tst2012 + TEDX.dev2012 (5863 segment pairs),
          treated as the recipe treats training data: tokenizer, clean-corpus-n -ratio 1.5 1-175,
          lowercase -> 5636 pairs
  valid = IWSLT14.TED.dev2010, its first 3 talks (docid 69, 129, 93): 397 pairs
  test  = IWSLT14.TED.dev2010, its other 5 talks (docid 227, 531, 453, 535, 457): 490 pairs
          valid and test as the recipe treats test data: tokenizer, lowercase, no cleaning.
  BPE: iwslt14.tokenized.de-en/code.xz (the 10000 merges of the full IWSLT'14 training set).
Output: OUTPUT/{train,valid,test}.{de,en}, OUTPUT/code, OUTPUT/tmp/ (before BPE); with
--binarize DEST, fairseq-preprocess --source-lang de --target-lang en into DEST.

  python data-prep/prepare_sample.py --output data/iwslt14-sample --binarize data-bin/iwslt14-sample
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import moses  # noqa: E402
from prepare_iwslt14 import CLEAN, PAIR  # noqa: E402

PROG = "prepare_sample"
SAMPLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample", "iwslt14-de-en")
TRAIN_SETS = ("IWSLT14.TED.tst2010", "IWSLT14.TED.tst2011", "IWSLT14.TED.tst2012", "IWSLT14.TEDX.dev2012")
HELD_OUT_SET = "IWSLT14.TED.dev2010"
VALID_TALKS = 3  # the first 3 of its 8 talks (397 of 887 segments): the talk boundary nearest half
SRC, TGT = "de", "en"
# Counts this split must give; a changed input or pipeline is caught here and in the tests.
EXPECTED = {"train": 5636, "valid": 397, "test": 490}


def talks(sample_dir, name, lang):
    path = os.path.join(sample_dir, "orig", PAIR, f"{name}.{PAIR}.{lang}.xml")
    docs = moses.xml_documents(common.iter_lines(path))
    if not docs or not any(segments for _, segments in docs):
        raise common.PrepError(f"empty file: {common.find_input(path)} has no <seg id=...> lines")
    return docs


def split_text(sample_dir):
    """{split: {lang: [segment, ...]}} before tokenization."""
    text = {split: {} for split in EXPECTED}
    for lang in (SRC, TGT):
        text["train"][lang] = [seg for name in TRAIN_SETS for _, segs in talks(sample_dir, name, lang) for seg in segs]
        held_out = talks(sample_dir, HELD_OUT_SET, lang)
        text["valid"][lang] = [seg for _, segs in held_out[:VALID_TALKS] for seg in segs]
        text["test"][lang] = [seg for _, segs in held_out[VALID_TALKS:] for seg in segs]
    for split, sides in text.items():
        common.check_parallel(len(sides[SRC]), len(sides[TGT]), f"{split}.{SRC}", f"{split}.{TGT}")
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="output folder for the BPE'd text")
    parser.add_argument("--sample-dir", default=SAMPLE_DIR, help="the iwslt14-de-en sample (default: the bundled one)")
    parser.add_argument("--workers", type=int, default=1, help="processes for tokenization, BPE, fairseq-preprocess")
    parser.add_argument("--binarize", metavar="DEST", help="then run fairseq-preprocess into DEST")
    parser.add_argument("--joined-dictionary", action="store_true", help="fairseq-preprocess --joined-dictionary")
    args = parser.parse_args(argv)

    codes = os.path.join(args.sample_dir, "iwslt14.tokenized.de-en", "code")
    common.check_bpe_codes(codes)
    tmp = os.path.join(args.output, "tmp")
    os.makedirs(tmp, exist_ok=True)
    text = split_text(args.sample_dir)

    common.log(PROG, "tokenizing...")
    for lang in (SRC, TGT):
        common.process_file(text["train"][lang], os.path.join(tmp, f"train.tok.{lang}"), moses.LineSteps(lang),
                            args.workers)
        for split in ("valid", "test"):
            common.process_file(text[split][lang], os.path.join(tmp, f"{split}.{lang}"),
                                moses.LineSteps(lang, lowercase=True), args.workers)
    moses.clean_files(os.path.join(tmp, "train.tok"), SRC, TGT, os.path.join(tmp, "train.clean"), **CLEAN,
                      lowercase_prefix=os.path.join(tmp, "train"))

    common.log(PROG, "applying BPE...")
    common.bpe_splits(tmp, args.output, (SRC, TGT), tuple(EXPECTED), codes=codes, workers=args.workers)
    common.finish(PROG, args, (SRC, TGT))


if __name__ == "__main__":
    common.run_main(PROG, main)
