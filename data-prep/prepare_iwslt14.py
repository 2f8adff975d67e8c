#!/usr/bin/env python3
"""IWSLT'14 German-English in pure Python: reproduces fairseq's examples/translation/prepare-iwslt14.sh
(Moses tokenizer.perl, clean-corpus-n.perl, lowercase.perl, subword-nmt) without perl or git.

Steps, as the shell script:
  train: train.tags.de-en.L minus the lines holding <url>, <talkid> or <keywords>, with the
         <title>/<description> tags (not their text) removed; tokenizer -l L; clean-corpus-n
         -ratio 1.5, 1-175 words; lowercase. valid = every 23rd line of that, train = the rest.
  test:  the <seg id=...> lines of IWSLT14.TED.dev2010, TEDX.dev2012, TED.tst2010, tst2011,
         tst2012 (that order), ' for ’, tokenizer -l L, lowercase.
  BPE:   10000 joint merges learned on train.de + train.en (or --bpe-codes), applied to all splits.
  Then, with --binarize, fairseq-preprocess (separate dictionaries unless --joined-dictionary).

Input: --archive de-en.tgz, --source-dir with the unpacked files (each possibly .xz/.gz), or
neither: the archive is downloaded into --cache-dir (default OUTPUT/orig) once.
Output: OUTPUT/{train,valid,test}.{de,en}, OUTPUT/code, OUTPUT/tmp/ (the text before BPE).

  python data-prep/prepare_iwslt14.py --output iwslt14.tokenized.de-en --binarize data-bin/iwslt14.tokenized.de-en
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import moses  # noqa: E402

PROG = "prepare_iwslt14"
URL = "https://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz"
LANGS = ("de", "en")
PAIR = "de-en"
# In the order the script concatenates them into test.L.
TEST_SETS = ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010",
             "IWSLT14.TED.tst2011", "IWSLT14.TED.tst2012")
DROPPED_TAGS = ("<url>", "<talkid>", "<keywords>")
STRIPPED_TAGS = ("<title>", "</title>", "<description>", "</description>")
VALID_EVERY = 23
CLEAN = dict(ratio=1.5, min_len=1, max_len=175)


def input_names(lang):
    return [f"train.tags.{PAIR}.{lang}"] + [f"{name}.{PAIR}.{lang}.xml" for name in TEST_SETS]


def locate_inputs(args):
    """{file name: path} for the train.tags and XML files of both languages."""
    names = [name for lang in LANGS for name in input_names(lang)]
    if args.source_dir:
        base = args.source_dir
        if not os.path.isdir(base):
            raise common.PrepError(f"no such folder: {base}")
        # Accept the folder holding de-en/ (the script's orig/) as well as de-en/ itself.
        if not any(os.path.exists(os.path.join(base, names[0] + ext)) for ext in ("", ".xz", ".gz", ".bz2")) \
                and os.path.isdir(os.path.join(base, PAIR)):
            base = os.path.join(base, PAIR)
        return {name: common.find_input(os.path.join(base, name)) for name in names}
    cache = args.cache_dir or os.path.join(args.output, "orig")
    archive = args.archive
    if archive is None:
        common.log(PROG, f"downloading {args.url} into {cache}")
        archive = common.download(args.url, os.path.join(cache, os.path.basename(args.url) or "de-en.tgz"))
    elif not os.path.isfile(archive):
        raise common.PrepError(f"missing input file: {archive}")
    return common.extract_members(archive, set(names), os.path.join(cache, PAIR))


def train_tags_text(path):
    """grep -v '<url>' | grep -v '<talkid>' | grep -v '<keywords>' | sed -e 's/<title>//g' ..."""
    for line in common.iter_lines(path):
        if any(tag in line for tag in DROPPED_TAGS):
            continue
        for tag in STRIPPED_TAGS:
            line = line.replace(tag, "")
        yield line


def check_inputs(paths):
    """Both sides of every parallel file: present, non-empty, the same number of lines."""
    src, tgt = LANGS
    name = f"train.tags.{PAIR}"
    counts = [sum(1 for _ in train_tags_text(paths[f"{name}.{lang}"])) for lang in LANGS]
    if min(counts) and counts[0] != counts[1]:
        raise common.PrepError(f"line counts differ after removing the metadata lines: {name}.{src} has "
                               f"{counts[0]} lines, {name}.{tgt} has {counts[1]}")
    common.check_parallel(*counts, paths[f"{name}.{src}"], paths[f"{name}.{tgt}"])
    segments = {}
    for test_set in TEST_SETS:
        files = [paths[f"{test_set}.{PAIR}.{lang}.xml"] for lang in LANGS]
        sides = [moses.xml_segments(common.iter_lines(f)) for f in files]
        for side, f in zip(sides, files):
            if not side:
                raise common.PrepError(f"empty file: {f} has no <seg id=...> lines")
        common.check_parallel(len(sides[0]), len(sides[1]), *files)
        segments[test_set] = dict(zip(LANGS, sides))
    return segments


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--archive", help="de-en.tgz as downloaded from the recipe's URL")
    source.add_argument("--source-dir",
                        help="folder with train.tags.de-en.{de,en} and the IWSLT14.TED*/TEDX* .xml files")
    parser.add_argument("--output", required=True, help="output folder (the recipe's iwslt14.tokenized.de-en)")
    parser.add_argument("--cache-dir", help="where the archive is downloaded and unpacked (default OUTPUT/orig)")
    parser.add_argument("--url", default=URL, help="download URL (default: %(default)s)")
    parser.add_argument("--src", default="de", help="source language (de or en; default de)")
    parser.add_argument("--tgt", default="en", help="target language (de or en; default en)")
    parser.add_argument("--bpe-tokens", type=int, default=10000, help="BPE merges to learn (default 10000)")
    parser.add_argument("--bpe-codes", help="apply these subword-nmt codes instead of learning new ones "
                        "(the official ones ship as data-prep/sample/iwslt14-de-en/iwslt14.tokenized.de-en/code.xz)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="processes for tokenization, BPE and fairseq-preprocess (default: up to 8)")
    parser.add_argument("--binarize", metavar="DEST", help="then run fairseq-preprocess into DEST")
    parser.add_argument("--joined-dictionary", action="store_true", help="fairseq-preprocess --joined-dictionary")
    args = parser.parse_args(argv)

    src = common.check_language(args.src, list(LANGS))
    tgt = common.check_language(args.tgt, list(LANGS))
    if src == tgt:
        raise common.PrepError("--src and --tgt must differ")
    if args.bpe_codes:
        common.check_bpe_codes(args.bpe_codes)
    order = (src, tgt)  # the script's `for l in $src $tgt`
    tmp = os.path.join(args.output, "tmp")
    os.makedirs(tmp, exist_ok=True)

    paths = locate_inputs(args)
    segments = check_inputs(paths)

    common.log(PROG, "pre-processing train data...")
    for lang in order:
        common.process_file(train_tags_text(paths[f"train.tags.{PAIR}.{lang}"]),
                            os.path.join(tmp, f"train.tags.{PAIR}.tok.{lang}"), moses.LineSteps(lang), args.workers)
    kept = moses.clean_files(os.path.join(tmp, f"train.tags.{PAIR}.tok"), src, tgt,
                             os.path.join(tmp, f"train.tags.{PAIR}.clean"), **CLEAN,
                             lowercase_prefix=os.path.join(tmp, f"train.tags.{PAIR}"))
    if kept == 0:
        raise common.PrepError("no sentence pair of the training data is left after clean-corpus")

    common.log(PROG, "pre-processing valid/test data...")
    for test_set in TEST_SETS:
        for lang in order:
            common.process_file(segments[test_set][lang], os.path.join(tmp, f"{test_set}.{PAIR}.{lang}"),
                                moses.LineSteps(lang, lowercase=True), args.workers)

    common.log(PROG, "creating train, valid, test...")
    for lang in order:
        common.split_file_every(os.path.join(tmp, f"train.tags.{PAIR}.{lang}"), VALID_EVERY,
                                os.path.join(tmp, f"train.{lang}"), os.path.join(tmp, f"valid.{lang}"))
        common.concat_files([os.path.join(tmp, f"{name}.{PAIR}.{lang}") for name in TEST_SETS],
                            os.path.join(tmp, f"test.{lang}"))

    common.log(PROG, "BPE..." if not args.bpe_codes else f"applying BPE codes {args.bpe_codes}...")
    common.bpe_splits(tmp, args.output, order, ("train", "valid", "test"), args.bpe_codes, args.bpe_tokens,
                      args.workers)
    common.finish(PROG, args, order)


if __name__ == "__main__":
    common.run_main(PROG, main)
