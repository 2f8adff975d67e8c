#!/usr/bin/env python3
"""WMT English-German in pure Python: reproduces fairseq's examples/translation/prepare-wmt14en2de.sh
(default: the "wmt17_en_de" set; --icml17: "wmt14_en_de", news-commentary v9 as in the ConvS2S paper).

Steps, as the shell script (src en, tgt de):
  train: europarl-v7 + commoncrawl + news-commentary-v12 (v9 with --icml17), per language
         normalize-punctuation.perl L | remove-non-printing-char.perl | tokenizer.perl -a -l L
         (no lowercasing); valid = every 100th line, train = the rest.
  test:  the <seg id=...> lines of newstest2014-deen-src.en.sgm / -ref.de.sgm, ' for ’,
         tokenizer.perl -a -l L (no punctuation normalization, as in the script).
  BPE:   40000 joint merges learned on train.en + train.de, applied to train, valid and test;
         then clean-corpus-n -ratio 1.5, 1-250 words on train and valid (test is not cleaned).
  --sentencepiece: a BPE SentencePiece model (vocabulary --bpe-tokens) replaces subword-nmt.
  Then, with --binarize, fairseq-preprocess (separate dictionaries unless --joined-dictionary).
The script's dev.tgz (newstest2013) is downloaded by it but never used, so it is not fetched here.

Each corpus is taken from a local path or, when not given, downloaded from the recipe's URL into
--cache-dir (default OUTPUT/orig). A path is the archive as downloaded (.tgz), a folder holding
the corpus files, or a prefix P with P.en and P.de (each possibly .xz/.gz).

  python data-prep/prepare_wmt17_en_de.py --output wmt17_en_de --europarl training-parallel-europarl-v7.tgz ...
"""
import argparse
import os
import shutil
import sys
import tarfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import moses  # noqa: E402

PROG = "prepare_wmt17_en_de"
SRC, TGT = "en", "de"
PAIR = "en-de"
# option name: (URL, corpus prefix inside the archive), in the script's CORPORA order.
CORPORA = {
    "europarl": ("http://statmt.org/wmt13/training-parallel-europarl-v7.tgz", "europarl-v7.de-en"),
    "commoncrawl": ("http://statmt.org/wmt13/training-parallel-commoncrawl.tgz", "commoncrawl.de-en"),
    "news_commentary": ("http://data.statmt.org/wmt17/translation-task/training-parallel-nc-v12.tgz",
                        "news-commentary-v12.de-en"),
}
ICML17_NEWS_COMMENTARY = ("http://statmt.org/wmt14/training-parallel-nc-v9.tgz", "news-commentary-v9.de-en")
TEST_URL = "http://statmt.org/wmt14/test-full.tgz"
# The script's t=src for the source language, t=ref for the target language.
TEST_FILES = {SRC: "newstest2014-deen-src.en.sgm", TGT: "newstest2014-deen-ref.de.sgm"}
VALID_EVERY = 100
CLEAN = dict(ratio=1.5, min_len=1, max_len=250)


def is_archive(path):
    return os.path.isfile(path) and tarfile.is_tarfile(path)


def resolve(path, url, basenames, cache):
    """{basename: local file} from an archive, a folder, a prefix (corpora) or a download."""
    if path is None:
        common.log(PROG, f"downloading {url} into {cache}")
        path = common.download(url, os.path.join(cache, os.path.basename(url)))
    elif path.endswith((".tgz", ".tar.gz", ".tar")) and not os.path.isfile(path):
        raise common.PrepError(f"missing input file: {path}")
    if is_archive(path):
        return common.extract_members(path, set(basenames), os.path.join(cache, "extracted"))
    if os.path.isdir(path):
        return {name: common.find_input(os.path.join(path, name)) for name in basenames}
    return None


def corpus_files(args, option, url, prefix, cache):
    """(en file, de file) of one training corpus."""
    names = [f"{prefix}.{SRC}", f"{prefix}.{TGT}"]
    path = getattr(args, option)
    found = resolve(path, url, names, cache)
    if found is None:  # a prefix: PATH.en and PATH.de
        return common.find_input(f"{path}.{SRC}"), common.find_input(f"{path}.{TGT}")
    return found[names[0]], found[names[1]]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="output folder (the recipe's wmt17_en_de / wmt14_en_de)")
    parser.add_argument("--icml17", action="store_true", help="news-commentary-v9 instead of v12 (the WMT14 set)")
    parser.add_argument("--europarl",
                        help="training-parallel-europarl-v7.tgz, or a folder/prefix of europarl-v7.de-en.{en,de}")
    parser.add_argument("--commoncrawl",
                        help="training-parallel-commoncrawl.tgz, or a folder/prefix of commoncrawl.de-en.{en,de}")
    parser.add_argument("--news-commentary",
                        help="training-parallel-nc-v12.tgz (nc-v9 with --icml17), or a folder/prefix")
    parser.add_argument("--newstest2014", "--newstest2014-dir", dest="newstest2014",
                        help="test-full.tgz, or a folder holding newstest2014-deen-src.en.sgm and -ref.de.sgm")
    parser.add_argument("--cache-dir", help="where downloads and unpacked archive members go (default OUTPUT/orig)")
    parser.add_argument("--bpe-tokens", type=int, default=40000,
                        help="BPE merges (subword-nmt) or vocabulary size (--sentencepiece); default 40000")
    parser.add_argument("--bpe-codes", help="apply these subword-nmt codes instead of learning new ones")
    parser.add_argument("--sentencepiece", action="store_true", help="SentencePiece (BPE model) instead of subword-nmt")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="processes for tokenization, BPE and fairseq-preprocess (default: up to 8)")
    parser.add_argument("--binarize", metavar="DEST", help="then run fairseq-preprocess into DEST")
    parser.add_argument("--joined-dictionary", action="store_true", help="fairseq-preprocess --joined-dictionary")
    args = parser.parse_args(argv)

    if args.sentencepiece:
        if args.bpe_codes:
            raise common.PrepError("--bpe-codes and --sentencepiece exclude each other")
        common.sentencepiece_module()  # fail before hours of tokenization, not after
    if args.bpe_codes:
        common.check_bpe_codes(args.bpe_codes)
    cache = args.cache_dir or os.path.join(args.output, "orig")
    tmp = os.path.join(args.output, "tmp")
    os.makedirs(tmp, exist_ok=True)

    corpora = dict(CORPORA)
    if args.icml17:
        corpora["news_commentary"] = ICML17_NEWS_COMMENTARY
    files = [corpus_files(args, option, url, prefix, cache) for option, (url, prefix) in corpora.items()]
    for en, de in files:
        common.check_parallel(common.count_lines(en), common.count_lines(de), en, de)
    test = resolve(args.newstest2014, TEST_URL, list(TEST_FILES.values()), cache)
    if test is None:
        raise common.PrepError(f"--newstest2014 must be test-full.tgz or a folder; no such archive or folder: "
                               f"{args.newstest2014}")
    test_text = {lang: moses.xml_segments(common.iter_lines(test[name])) for lang, name in TEST_FILES.items()}
    common.check_parallel(len(test_text[SRC]), len(test_text[TGT]), test[TEST_FILES[SRC]], test[TEST_FILES[TGT]])

    common.log(PROG, "pre-processing train data...")
    for lang in (SRC, TGT):
        out = os.path.join(tmp, f"train.tags.{PAIR}.tok.{lang}")
        steps = moses.LineSteps(lang, normalize=True, non_printing=True, aggressive=True)
        for i, corpus in enumerate(files):
            common.process_file(common.iter_lines(corpus[(SRC, TGT).index(lang)]), out, steps, args.workers,
                                append=i > 0)

    common.log(PROG, "pre-processing test data...")
    for lang in (SRC, TGT):
        common.process_file(test_text[lang], os.path.join(tmp, f"test.{lang}"),
                            moses.LineSteps(lang, aggressive=True), args.workers)

    common.log(PROG, "splitting train and valid...")
    for lang in (SRC, TGT):
        common.split_file_every(os.path.join(tmp, f"train.tags.{PAIR}.tok.{lang}"), VALID_EVERY,
                                os.path.join(tmp, f"train.{lang}"), os.path.join(tmp, f"valid.{lang}"))

    splits = ("train", "valid", "test")
    if args.sentencepiece:
        common.log(PROG, "learning and applying a SentencePiece model...")
        model = common.learn_sentencepiece([os.path.join(tmp, f"train.{lang}") for lang in (SRC, TGT)],
                                           os.path.join(args.output, "spm"), args.bpe_tokens, args.workers)
        for lang in (SRC, TGT):
            for split in splits:
                common.process_file(common.iter_lines(os.path.join(tmp, f"{split}.{lang}")),
                                    os.path.join(tmp, f"bpe.{split}.{lang}"), common.ApplySentencepiece(model),
                                    args.workers)
    else:
        common.log(PROG, "BPE...")
        common.bpe_splits(tmp, tmp, (SRC, TGT), splits, args.bpe_codes, args.bpe_tokens, args.workers,
                          out_prefix="bpe.", code_dir=args.output)
    for split in ("train", "valid"):
        if moses.clean_files(os.path.join(tmp, f"bpe.{split}"), SRC, TGT, os.path.join(args.output, split),
                             **CLEAN) == 0:
            raise common.PrepError(f"no sentence pair of {split} is left after clean-corpus")
    for lang in (SRC, TGT):
        shutil.copyfile(os.path.join(tmp, f"bpe.test.{lang}"), os.path.join(args.output, f"test.{lang}"))

    common.finish(PROG, args, (SRC, TGT))


if __name__ == "__main__":
    common.run_main(PROG, main)
