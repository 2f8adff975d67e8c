#!/usr/bin/env python3
"""Bring your own parallel data: the IWSLT recipe's steps (fairseq's prepare-iwslt14.sh) on any raw
sentence-aligned text files PREFIX.SRC / PREFIX.TGT (one sentence per line, UTF-8, possibly .xz/.gz).

  train: [normalize-punctuation + remove-non-printing-char] | tokenizer.perl [-a] -l L;
         clean-corpus-n -ratio 1.5, 1-175 words (--clean-*, --no-clean); [lowercase]
  valid, test: the same without cleaning (as the recipe treats its test sets)
  BPE: --bpe-tokens joint merges learned on train.SRC + train.TGT (or --bpe-codes), on all splits.
  Then, with --binarize, fairseq-preprocess (separate dictionaries unless --joined-dictionary).
Language codes are those of the Moses tokenizer (its non-breaking-prefix languages).
Output: OUTPUT/{train,valid,test}.{SRC,TGT}, OUTPUT/code, OUTPUT/tmp/ (the text before BPE).

  python data-prep/prepare_parallel.py --src fr --tgt en --train-prefix raw/train --valid-prefix raw/dev \\
      --test-prefix raw/test --lowercase --output fr-en --binarize data-bin/fr-en
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import moses  # noqa: E402

PROG = "prepare_parallel"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="source language code (e.g. de)")
    parser.add_argument("--tgt", required=True, help="target language code (e.g. en)")
    parser.add_argument("--train-prefix", required=True, help="PREFIX of PREFIX.SRC and PREFIX.TGT")
    parser.add_argument("--valid-prefix", help="validation set prefix (optional)")
    parser.add_argument("--test-prefix", help="test set prefix (optional)")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--lowercase", action="store_true", help="lowercase everything (the IWSLT recipe does)")
    parser.add_argument("--aggressive-dash-splits", "-a", action="store_true",
                        help="tokenizer.perl -a (the WMT recipes do)")
    parser.add_argument("--normalize-punctuation", action="store_true",
                        help="normalize-punctuation.perl and remove-non-printing-char.perl on train "
                        "(the WMT recipes do)")
    parser.add_argument("--no-clean", action="store_true", help="skip clean-corpus-n on train")
    parser.add_argument("--clean-ratio", type=float, default=1.5, help="default %(default)s")
    parser.add_argument("--clean-min", type=int, default=1, help="default %(default)s")
    parser.add_argument("--clean-max", type=int, default=175, help="default %(default)s")
    parser.add_argument("--bpe-tokens", type=int, default=10000, help="BPE merges to learn (default 10000)")
    parser.add_argument("--bpe-codes", help="apply these subword-nmt codes instead of learning new ones")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="processes for tokenization, BPE and fairseq-preprocess (default: up to 8)")
    parser.add_argument("--binarize", metavar="DEST", help="then run fairseq-preprocess into DEST")
    parser.add_argument("--joined-dictionary", action="store_true", help="fairseq-preprocess --joined-dictionary")
    args = parser.parse_args(argv)

    src, tgt = common.check_language(args.src), common.check_language(args.tgt)
    if src == tgt:
        raise common.PrepError("--src and --tgt must differ")
    if args.bpe_codes:
        common.check_bpe_codes(args.bpe_codes)
    prefixes = {split: prefix for split, prefix in
                (("train", args.train_prefix), ("valid", args.valid_prefix), ("test", args.test_prefix)) if prefix}
    for prefix in prefixes.values():
        paths = [common.find_input(f"{prefix}.{lang}") for lang in (src, tgt)]
        common.check_parallel(common.count_lines(paths[0]), common.count_lines(paths[1]), *paths)
    tmp = os.path.join(args.output, "tmp")
    os.makedirs(tmp, exist_ok=True)

    common.log(PROG, "tokenizing...")
    for split, prefix in prefixes.items():
        train = split == "train"
        clean = train and not args.no_clean
        for lang in (src, tgt):
            steps = moses.LineSteps(lang, normalize=train and args.normalize_punctuation,
                                    non_printing=train and args.normalize_punctuation,
                                    aggressive=args.aggressive_dash_splits, lowercase=args.lowercase and not clean)
            out = os.path.join(tmp, f"train.tok.{lang}" if clean else f"{split}.{lang}")
            common.process_file(common.iter_lines(f"{prefix}.{lang}"), out, steps, args.workers)
        if clean:
            # clean-corpus-n first, lowercase after, in the recipe's order.
            cleaned = os.path.join(tmp, "train.clean" if args.lowercase else "train")
            kept = moses.clean_files(os.path.join(tmp, "train.tok"), src, tgt, cleaned, args.clean_ratio,
                                     args.clean_min, args.clean_max,
                                     lowercase_prefix=os.path.join(tmp, "train") if args.lowercase else None)
            if kept == 0:
                raise common.PrepError("no sentence pair of the training data is left after clean-corpus")

    common.log(PROG, "BPE...")
    common.bpe_splits(tmp, args.output, (src, tgt), tuple(prefixes), args.bpe_codes, args.bpe_tokens, args.workers)
    common.finish(PROG, args, (src, tgt), tuple(prefixes))


if __name__ == "__main__":
    common.run_main(PROG, main)
