#!/usr/bin/env python3
"""Compare this folder's Python pipeline with the outputs of fairseq's prepare-iwslt14.sh (Perl
Moses + subword-nmt), as released in REFERENCE_DIR (the iwslt14-de-en data set: orig/de-en/*.xml*,
iwslt14.tokenized.de-en/{code,test.*,valid.*,tmp/*}, each file possibly .xz-compressed).

Checks, per language:
  1. each test year: XML seg extraction + tokenizer + lowercase vs tmp/IWSLT14.*.de-en.L
  2. the concatenated test set vs tmp/test.L
  3. apply_bpe with the reference code on our tokenized test vs test.L
  4. apply_bpe with the reference code on the reference tmp/valid.L vs valid.L (the BPE step alone:
     valid comes from the training set, which the reference does not include)
Prints the number of differing lines per file and the first differences. Exit status 0 when the
check ran (whatever it found), 1 on missing files; --strict: 2 when any line differs.

  python data-prep/check_against_reference.py /path/to/iwslt14-de-en [--xml-dir DIR] [--show 5]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import moses  # noqa: E402
from prepare_iwslt14 import TEST_SETS  # noqa: E402

SAMPLE_XML = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample", "iwslt14-de-en", "orig", "de-en")


def compare(name, ours, ref, show):
    if len(ours) != len(ref):
        print(f"{name}: line counts differ: ours {len(ours)}, reference {len(ref)}")
        return max(len(ours), len(ref))
    diffs = [(i, a, b) for i, (a, b) in enumerate(zip(ours, ref), 1) if a != b]
    print(f"{name}: {len(ref)} lines, {len(diffs)} differ")
    for i, a, b in diffs[:show]:
        print(f"  line {i}\n    ours: {a}\n    ref:  {b}")
    return len(diffs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reference_dir", help="the iwslt14-de-en folder, or its iwslt14.tokenized.de-en/")
    parser.add_argument("--xml-dir", help="folder of the IWSLT14 XML files (default: the reference's "
                        "orig/de-en, else the bundled sample)")
    parser.add_argument("--show", type=int, default=5, help="differing lines to print per file")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--plain-sacremoses", action="store_true",
                        help="tokenize with sacremoses as is, without PerlMosesTokenizer's last-word rule")
    parser.add_argument("--strict", action="store_true", help="exit 2 when any line differs")
    args = parser.parse_args(argv)

    ref = os.path.abspath(args.reference_dir)
    tok_name = "iwslt14.tokenized.de-en"
    tok_dir = ref if os.path.basename(ref) == tok_name else os.path.join(ref, tok_name)
    root = os.path.dirname(tok_dir)
    xml_dir = args.xml_dir or next(
        (d for d in (os.path.join(root, "orig", "de-en"), SAMPLE_XML)
         if os.path.exists(os.path.join(d, f"{TEST_SETS[0]}.de-en.de.xml.xz"))
         or os.path.exists(os.path.join(d, f"{TEST_SETS[0]}.de-en.de.xml"))), SAMPLE_XML)
    code = os.path.join(tok_dir, "code")
    print(f"reference: {tok_dir}\nXML input: {xml_dir}")

    total = 0
    for lang in ("de", "en"):
        tokenized = []
        for name in TEST_SETS:
            segments = moses.xml_segments(common.iter_lines(os.path.join(xml_dir, f"{name}.de-en.{lang}.xml")))
            steps = moses.LineSteps(lang, lowercase=True, perl_last_word=not args.plain_sacremoses)
            ours = list(common.map_lines(steps, segments, args.workers))
            tokenized += ours
            total += compare(f"tmp/{name}.de-en.{lang}", ours,
                             common.read_lines(os.path.join(tok_dir, "tmp", f"{name}.de-en.{lang}")), args.show)
        total += compare(f"tmp/test.{lang}", tokenized,
                         common.read_lines(os.path.join(tok_dir, "tmp", f"test.{lang}")), args.show)
        bpe = common.ApplyBpe(code)
        total += compare(f"test.{lang} (our tokens, reference code)", list(common.map_lines(bpe, tokenized)),
                         common.read_lines(os.path.join(tok_dir, f"test.{lang}")), args.show)
        ref_valid = common.iter_lines(os.path.join(tok_dir, "tmp", f"valid.{lang}"))
        total += compare(f"valid.{lang} (reference tmp/valid, reference code)", list(common.map_lines(bpe, ref_valid)),
                         common.read_lines(os.path.join(tok_dir, f"valid.{lang}")), args.show)
    print(f"total differing lines: {total}")
    if args.strict and total:
        sys.exit(2)


if __name__ == "__main__":
    common.run_main("check_against_reference", main)
