#!/usr/bin/env python3
"""Rebuild the verse-aligned English (King James Version) - Spanish (Reina-Valera 1909) corpus in
data-prep/bible/kjv-rv1909/ from the public-domain SWORD modules that Debian ships:

    apt-get install diatheke sword-text-kjv sword-text-sparv

(modules engKJV2006eb and spaRV1909eb; this script installs nothing). Why: a real parallel corpus,
small enough (about 30,000 verse pairs) for a small Transformer to learn in CPU minutes, that can be
shipped in the repository and rebuilt by anyone.

Steps:
  read:   one `diatheke -b MODULE -f internal -l en -k "Gen 1:1-Rev 22:21"` per module: every verse
          of the KJV versification (31,102), with its OSIS markup.
  clean:  drop footnotes and in-verse headings, strip every tag (<w> Strong's/morphology wrappers,
          <transChange>, <divineName>, <q>, <l>, <milestone>, ...), stray USFM markers (\\nd),
          the KJV's pilcrow (paragraph sign) and its one pair of [brackets]; unescape entities;
          squeeze whitespace. Where removing a tag would glue two words, a space goes in, except
          for a Spanish enclitic pronoun tagged apart from its verb (sáca|lo -> sácalo).
  KJV:    the Psalm titles (canonical headings before verse 1) become the start of verse 1, as the
          RV1909 module has them. diatheke repeats a heading over later verses of a range; only a
          heading that differs from the previous verse's is real (all 116 are at a Psalm's verse 1).
  RV1909: the 22 acrostic letter names heading Psalm 119 (ALEPH., BETH, ...) and the subscriptions
          after the final "Amén." of the 14 epistles Romans-Hebrews are removed (the KJV module has
          neither); the all-capital first word(s) of every chapter and of Luke 1:5 (a drop-capital
          convention, "EN el principio") are recased: the first word as a sentence start, any other
          by the casing it has most often elsewhere in the RV1909 ("Y JEHOVÁ" -> "Y Jehová").
  align:  verses pair by reference (book, chapter, verse). The RV1909 module keeps Spanish verse
          divisions in a few places (Num 13 and 30, 1 Sam 24, 1 Kgs 22, 1 Chr 21, 2 Chr 33, Job 39-40,
          Hos 12, Jonah 2, ...; its 18 empty verses mark some), so a pair is kept only where both
          sides are non-empty and a sentence alignment of the whole book also pairs the two verses
          one-to-one: Gale & Church's (1993) dynamic programme on character lengths, its cost plus
          a lexical one from a word-translation table learned here from the reference-aligned pairs
          (Dice coefficients), as in Moore (2002) / hunalign. Every dropped verse is listed with
          its reason.
  split:  by verse, fixed: the aligned verses sorted by sha256("kjv-rv1909:" + OSIS reference);
          the first 1000 are valid, the next 1500 test, the rest train. Each split is in Bible order.

Output (OUTPUT/): {train,valid,test}.{en,es} (raw text, cased, one verse a line), refs.tsv (split,
line, OSIS reference of every line), dropped.tsv (the verses not in the corpus and why); with --xz
the first seven are written xz-compressed (preset 9), as committed. --check DIR compares the build
with an existing copy (plain or .xz) and fails on any difference.

  python data-prep/build_bible_corpus.py --output data-prep/bible/kjv-rv1909 --xz
"""
import argparse
import hashlib
import lzma
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from bible_align import align  # noqa: E402
from bible_text import (LEFT_OVER, MODULES, check_installed, english_verses, module_version,  # noqa: E402
                        osis_ref, read_module, spanish_verses)

PROG = "build_bible_corpus"
SPLIT_SALT = "kjv-rv1909:"  # the split's seed
SPLIT_SIZES = (("valid", 1000), ("test", 1500))  # the rest is train
SPLITS = ("train", "valid", "test")

# (OSIS id, name diatheke prints with -l en), in Bible order.


def split(refs):
    """{split: [ref, ...] in Bible order}: valid and test the verses first by sha256 of salt + ref."""
    ranked = sorted(refs, key=lambda r: hashlib.sha256((SPLIT_SALT + osis_ref(r)).encode()).hexdigest())
    out, start = {}, 0
    for name, size in SPLIT_SIZES:
        out[name] = sorted(ranked[start:start + size])
        start += size
    out["train"] = sorted(ranked[start:])
    return out


# --------------------------------------------------------------------------- output

def build():
    """Everything the corpus is made of: ({file name: text}, report lines)."""
    check_installed()
    common.log(PROG, f"reading {', '.join(MODULES.values())} with diatheke...")
    raw = {lang: read_module(module) for lang, module in MODULES.items()}
    en, en_stats = english_verses(raw["en"])
    es, es_stats = spanish_verses(raw["es"])
    for verses in (en, es):
        for ref, text in verses.items():
            if LEFT_OVER.search(text):
                raise common.PrepError(f"markup left in {osis_ref(ref)} after cleaning: {text[:80]!r}")
    kept, dropped, cost = align(en, es)
    splits = split(kept)
    files = {}
    for name in SPLITS:
        for lang, verses in (("en", en), ("es", es)):
            files[f"{name}.{lang}"] = "".join(verses[r] + "\n" for r in splits[name])
    files["refs.tsv"] = "split\tline\tref\n" + "".join(
        f"{name}\t{i}\t{osis_ref(r)}\n" for name in SPLITS for i, r in enumerate(splits[name], 1))
    files["dropped.tsv"] = "ref\treason\n" + "".join(f"{osis_ref(r)}\t{dropped[r]}\n" for r in sorted(dropped))

    report = [f"{MODULES[lang]} (version {module_version(MODULES[lang])}): {len(raw[lang])} verses, "
              f"{sum(1 for v in verses.values() if v)} non-empty"
              for lang, verses in (("en", en), ("es", es))]
    report += [f"{key}: {value}" for key, value in {**en_stats, **es_stats}.items()]
    report.append(f"aligned: {len(kept)} verse pairs (length model: c={cost.c:.4f}, s2={cost.s2:.3f})")
    reasons = {}
    for reason in dropped.values():
        reasons[reason] = reasons.get(reason, 0) + 1
    report += [f"dropped: {n} ({reason})" for reason, n in sorted(reasons.items())]
    report += [f"{name}: {len(splits[name])} pairs" for name in SPLITS]
    return files, report


def compressed_name(name, xz):
    return name + ".xz" if xz and name != "dropped.tsv" else name


def write(files, out_dir, xz):
    os.makedirs(out_dir, exist_ok=True)
    for name, text in files.items():
        path = os.path.join(out_dir, compressed_name(name, xz))
        data = text.encode("utf-8")
        if path.endswith(".xz"):
            data = lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=9)
        with open(path + ".part", "wb") as f:
            f.write(data)
        os.replace(path + ".part", path)


def check(files, folder):
    """Lines saying how the files in folder (plain or .xz) differ from the build; [] if none."""
    problems = []
    for name, text in files.items():
        try:
            path = common.find_input(os.path.join(folder, name))
        except common.PrepError:
            problems.append(f"{name}: missing in {folder}")
            continue
        opener = lzma.open if path.endswith(".xz") else open
        with opener(path, "rb") as f:
            data = f.read()
        if data != text.encode("utf-8"):
            problems.append(f"{os.path.basename(path)}: differs from the build")
    return problems


def manifest(files, xz):
    """The README's table: file, lines, sha256 of the uncompressed content."""
    rows = ["| file | lines | sha256 (uncompressed) |", "|---|---|---|"]
    for name, text in files.items():
        rows.append(f"| {compressed_name(name, xz)} | {text.count(chr(10))} | "
                    f"{hashlib.sha256(text.encode('utf-8')).hexdigest()} |")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", help="write the corpus into this folder")
    parser.add_argument("--xz", action="store_true", help="write the files xz-compressed (as committed)")
    parser.add_argument("--check", metavar="DIR", help="compare the build with the corpus in DIR (plain or .xz)")
    args = parser.parse_args(argv)
    if not args.output and not args.check:
        parser.error("give --output DIR, --check DIR or both")

    files, report = build()
    print("\n".join(report))
    if args.output:
        write(files, args.output, args.xz)
        common.log(PROG, f"wrote {len(files)} files into {args.output}")
        print("\n".join(manifest(files, args.xz)))
    if args.check:
        problems = check(files, args.check)
        if problems:
            raise common.PrepError(f"{args.check} differs from the build: {'; '.join(problems)}")
        print(f"check: {args.check} is identical to the build")


if __name__ == "__main__":
    common.run_main(PROG, main)
