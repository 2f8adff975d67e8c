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
import bisect
import hashlib
import html
import lzma
import math
import os
import re
import shutil
import subprocess
import sys
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

PROG = "build_bible_corpus"
INSTALL = "apt-get install diatheke sword-text-kjv sword-text-sparv"
MODULES = {"en": "engKJV2006eb", "es": "spaRV1909eb"}  # Debian: sword-text-kjv, sword-text-sparv
KEY = "Gen 1:1-Rev 22:21"
SPLIT_SALT = "kjv-rv1909:"  # the split's seed
SPLIT_SIZES = (("valid", 1000), ("test", 1500))  # the rest is train
SPLITS = ("train", "valid", "test")

# (OSIS id, name diatheke prints with -l en), in Bible order.
BOOKS = (
    ("Gen", "Genesis"), ("Exod", "Exodus"), ("Lev", "Leviticus"), ("Num", "Numbers"),
    ("Deut", "Deuteronomy"), ("Josh", "Joshua"), ("Judg", "Judges"), ("Ruth", "Ruth"),
    ("1Sam", "I Samuel"), ("2Sam", "II Samuel"), ("1Kgs", "I Kings"), ("2Kgs", "II Kings"),
    ("1Chr", "I Chronicles"), ("2Chr", "II Chronicles"), ("Ezra", "Ezra"), ("Neh", "Nehemiah"),
    ("Esth", "Esther"), ("Job", "Job"), ("Ps", "Psalms"), ("Prov", "Proverbs"),
    ("Eccl", "Ecclesiastes"), ("Song", "Song of Solomon"), ("Isa", "Isaiah"), ("Jer", "Jeremiah"),
    ("Lam", "Lamentations"), ("Ezek", "Ezekiel"), ("Dan", "Daniel"), ("Hos", "Hosea"), ("Joel", "Joel"),
    ("Amos", "Amos"), ("Obad", "Obadiah"), ("Jonah", "Jonah"), ("Mic", "Micah"), ("Nah", "Nahum"),
    ("Hab", "Habakkuk"), ("Zeph", "Zephaniah"), ("Hag", "Haggai"), ("Zech", "Zechariah"),
    ("Mal", "Malachi"), ("Matt", "Matthew"), ("Mark", "Mark"), ("Luke", "Luke"), ("John", "John"),
    ("Acts", "Acts"), ("Rom", "Romans"), ("1Cor", "I Corinthians"), ("2Cor", "II Corinthians"),
    ("Gal", "Galatians"), ("Eph", "Ephesians"), ("Phil", "Philippians"), ("Col", "Colossians"),
    ("1Thess", "I Thessalonians"), ("2Thess", "II Thessalonians"), ("1Tim", "I Timothy"),
    ("2Tim", "II Timothy"), ("Titus", "Titus"), ("Phlm", "Philemon"), ("Heb", "Hebrews"),
    ("Jas", "James"), ("1Pet", "I Peter"), ("2Pet", "II Peter"), ("1John", "I John"),
    ("2John", "II John"), ("3John", "III John"), ("Jude", "Jude"), ("Rev", "Revelation of John"),
)
OSIS = {name: osis for osis, name in BOOKS}
BOOK_INDEX = {osis: i for i, (osis, _) in enumerate(BOOKS)}
# The epistles whose RV1909 last verse carries a subscription ("Fué escrita de Corinto ...").
SUBSCRIBED = ("Rom", "1Cor", "2Cor", "Gal", "Eph", "Phil", "Col", "1Thess", "2Thess", "1Tim", "2Tim",
              "Titus", "Phlm", "Heb")
ACROSTIC = ("ALEPH", "BETH", "GIMEL", "DALETH", "HE", "VAU", "ZAIN", "CHETH", "TETH", "JOD", "CAPH", "LAMED",
            "MEM", "NUN", "SAMECH", "AIN", "PE", "TZADDI", "COPH", "RESH", "SIN", "TAU")
# Verses that open with a drop capital although they do not open a chapter: the first one after
# Luke's prologue ("HUBO en los días de Herodes").
MORE_DROP_CAPITALS = (("Luke", 1, 5),)
CLITICS = {"lo", "la", "los", "las", "le", "les", "me", "te", "se", "nos", "os"}
# Words before a separately tagged clitic that are not its verb (found by reading every such case).
NOT_VERBS = {"no", "y", "que", "como", "de", "os", "dios", "jehová", "josué", "cuánto", "ejército", "desolado",
             "gentes", "ellos", "dejaban"}

_REF = re.compile(r"(?:^|(?<=\s))(" + "|".join(re.escape(name) for _, name in
                                              sorted(BOOKS, key=lambda b: -len(b[1]))) + r") (\d+):(\d+): ")
_NOTE = re.compile(r"<note\b[^>]*>.*?</note>|<note\b[^>]*/>", re.S)
_TITLE = re.compile(r"<title\b[^>]*>.*?</title>", re.S)
_JUNCTION = re.compile(r"(?<=\w)((?:<[^>]*>)+)(?=\w)")
_TAG = re.compile(r"<[^>]*>")
_USFM = re.compile(r"\\[a-z]+[0-9]*\*?")
# What must not be left in a verse: tags, {notes}, Strong's numbers, the pilcrow, USFM backslashes.
_LEFT_OVER = re.compile(r"[<>{}\\\u00b6\[\]]|\b[HG]\d{1,5}\b")
_SUBSCRIPTION = re.compile(r"^(.*\bAmén\.)\s+(\S.*)$")


# --------------------------------------------------------------------------- reading

def check_installed():
    """diatheke and both modules, or one line saying what to install."""
    if shutil.which("diatheke") is None:
        raise common.PrepError(f"diatheke is not installed; run: {INSTALL}")
    listed = diatheke("system", "modulelist")
    missing = [m for m in MODULES.values() if not re.search(rf"^{m} : ", listed, re.M)]
    if missing:
        raise common.PrepError(f"SWORD module {', '.join(missing)} is not installed; run: {INSTALL}")


def diatheke(module, key, fmt=None):
    cmd = ["diatheke", "-b", module] + (["-f", fmt, "-l", "en"] if fmt else []) + ["-k", key]
    env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    if result.returncode != 0:
        raise common.PrepError(f"{' '.join(cmd)} failed (exit {result.returncode}): "
                               f"{result.stderr.decode('utf-8', 'replace').strip()[:200]}")
    try:
        return result.stdout.decode("utf-8")
    except UnicodeDecodeError as err:
        raise common.PrepError(f"diatheke -b {module}: output is not UTF-8 ({err.reason})") from None


def module_version(module):
    """Version= of the module's .conf in the system library (for the report), or '?'."""
    folder = "/usr/share/sword/mods.d"
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        try:
            with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        if re.search(rf"^\[{module}\]", text, re.M):
            match = re.search(r"^Version=(.*)$", text, re.M)
            return match.group(1).strip() if match else "?"
    return "?"


def read_module(module):
    """[(ref, preverse markup, verse markup)] in Bible order; ref = (book index, chapter, verse).

    diatheke -f internal prints one line per verse, "NAME C:V: markup", any preverse heading in
    front of it; a line without a reference continues the verse before it."""
    out = diatheke(module, KEY, "internal")
    verses = []
    for line in out.split("\n"):
        if not line.strip() or line.strip() == f"({module})":
            continue
        match = _REF.search(line)
        if match is None:
            if not verses:
                raise common.PrepError(f"diatheke -b {module}: unexpected output: {line[:80]!r}")
            ref, pre, text = verses[-1]
            verses[-1] = (ref, pre, text + " " + line)
            continue
        book = BOOK_INDEX[OSIS[match.group(1)]]
        verses.append(((book, int(match.group(2)), int(match.group(3))), line[:match.start()], line[match.end():]))
    refs = [v[0] for v in verses]
    if not verses or refs != sorted(refs) or len(set(refs)) != len(refs):
        raise common.PrepError(f"diatheke -b {module}: the verses are not in Bible order (or none was read)")
    return verses


def osis_ref(ref):
    return f"{BOOKS[ref[0]][0]}.{ref[1]}.{ref[2]}"


# --------------------------------------------------------------------------- cleaning

def _junction(lang):
    def replace(match):
        # A tag between two letters: a word boundary (a space), except a Spanish enclitic pronoun
        # tagged as an added word right after its verb: <w>sáca</w><transChange>lo</transChange>.
        string, start, end = match.string, match.start(), match.end()
        left = re.search(r"\w+$", string[max(0, start - 40):start]).group(0).lower()
        right = re.match(r"\w+", string[end:]).group(0).lower()
        if (lang == "es" and right in CLITICS and left not in NOT_VERBS
                and re.fullmatch(r"</w><transChange\b[^>]*>", match.group(1))):
            return ""
        return " "
    return replace


def strip_markup(markup, lang):
    """Plain text of a verse's OSIS markup (see the module docstring)."""
    text = _TITLE.sub(" ", _NOTE.sub(" ", markup))
    text = _JUNCTION.sub(_junction(lang), text)
    text = _TAG.sub("", text)
    text = _USFM.sub(" ", text)
    text = html.unescape(text).replace("\u00b6", " ").replace("[", "").replace("]", "")
    return " ".join(text.split())


def psalm_title(pre):
    """The text of a canonical Psalm title in a preverse heading ('' if none)."""
    titles = re.findall(r'<title\b[^>]*type="psalm"[^>]*>(.*?)</title>', pre, re.S)
    return " ".join(strip_markup(t, "en") for t in titles)


def english_verses(raw):
    """{ref: text}; Psalm titles moved into verse 1 (diatheke's repeated headings ignored)."""
    verses, previous, titles = {}, "", 0
    for ref, pre, markup in raw:
        text = strip_markup(markup, "en")
        if pre.strip() and pre != previous:
            title = psalm_title(pre)
            if BOOKS[ref[0]][0] != "Ps" or ref[2] != 1 or not title:
                raise common.PrepError(f"unexpected heading before {osis_ref(ref)}: {pre[:80]!r}")
            text = f"{title} {text}".strip()
            titles += 1
        previous = pre
        verses[ref] = text
    return verses, {"Psalm titles moved into verse 1": titles}


def fold(word):
    """word without its diacritics (Achâb -> Achab)."""
    return "".join(ch for ch in unicodedata.normalize("NFD", word) if not unicodedata.combining(ch))


def recase_word(word, counts, sentence_start):
    """An all-capital word in the casing it has most often elsewhere (counts: {form: n}, also
    keyed by fold(form) for words seen only with other diacritics); lowercase if never seen."""
    letters = [i for i, ch in enumerate(word) if ch.isalpha()]
    if not letters:
        return word
    first, core = letters[0], word[letters[0]:letters[-1] + 1]
    lower, title = core.lower(), core[0] + core[1:].lower()
    n_title, n_lower = counts.get(title, 0), counts.get(lower, 0)
    if not n_title and not n_lower:
        n_title, n_lower = counts.get(("folded", fold(title)), 0), counts.get(("folded", fold(lower)), 0)
    chosen = title if sentence_start or n_title > n_lower else lower
    return word[:first] + chosen + word[letters[-1] + 1:]


def _all_caps(token, min_letters):
    letters = [ch for ch in token if ch.isalpha()]
    return len(letters) >= min_letters and all(ch.isupper() for ch in letters)


def spanish_verses(raw):
    """{ref: text} with the RV1909-specific fixes of the module docstring."""
    verses = {ref: strip_markup(markup, "es") for ref, pre, markup in raw}
    for ref, pre, _ in raw:
        if pre.strip():
            raise common.PrepError(f"unexpected heading before {osis_ref(ref)} in {MODULES['es']}: {pre[:80]!r}")
    stats = {"Psalm 119 letter headings removed": 0, "epistle subscriptions removed": 0,
             "chapter-initial capitals recased": 0}
    ps = BOOK_INDEX["Ps"]
    for n, letter in enumerate(ACROSTIC):
        ref = (ps, 119, 8 * n + 1)
        new = re.sub(rf"^{letter}\.?\s+", "", verses.get(ref, ""))
        if new != verses.get(ref, ""):
            verses[ref] = new
            stats["Psalm 119 letter headings removed"] += 1
    last = {}
    for ref, text in verses.items():
        if text:
            last[ref[0]] = ref
    for osis in SUBSCRIBED:
        ref = last.get(BOOK_INDEX[osis])
        match = _SUBSCRIPTION.match(verses[ref]) if ref else None
        if match:
            verses[ref] = match.group(1)
            stats["epistle subscriptions removed"] += 1
    # Casing evidence: every token that is not all capitals.
    counts = {}
    for text in verses.values():
        for token in text.split():
            core = "".join(ch for ch in token if ch.isalpha())
            if core and not core.isupper():
                counts[core] = counts.get(core, 0) + 1
                counts["folded", fold(core)] = counts.get(("folded", fold(core)), 0) + 1
    seen, extra = set(), {(BOOK_INDEX[book], chapter, verse) for book, chapter, verse in MORE_DROP_CAPITALS}
    for ref in sorted(verses):
        chapter = ref[:2]
        if (chapter in seen and ref not in extra) or not verses[ref]:
            continue
        seen.add(chapter)
        tokens = verses[ref].split()
        start = next((i for i, t in enumerate(tokens) if _all_caps(t, 2)), None)
        if start is None:
            continue
        end = start + 1
        while end < len(tokens) and _all_caps(tokens[end], 1):
            end += 1
        for i in range(start, end):
            sentence_start = i == 0 or tokens[i - 1][-1] in ".?!" or tokens[i][0] in "¡¿"
            tokens[i] = recase_word(tokens[i], counts, sentence_start if i == start else False)
        verses[ref] = " ".join(tokens)
        stats["chapter-initial capitals recased"] += 1
    return verses, stats


# --------------------------------------------------------------------------- alignment

# Gale & Church (1993): prior probabilities of the alignment types, without their 2-2 type (two
# verses against two: with it, two neighbours whose lengths deviate in opposite directions would
# be taken for a moved verse boundary).
BEADS = {(1, 1): 0.89, (1, 0): 0.0099 / 2, (0, 1): 0.0099 / 2, (2, 1): 0.089 / 2, (1, 2): 0.089 / 2}
BAND = 6  # the path stays within this many verses of the reference diagonal
LEXICAL_WEIGHT = 4.0  # of -log(0.02 + lexical similarity), per verse of a bead
_WORD = re.compile(r"\w+")


def word_sets(verses):
    return {ref: frozenset(w.lower() for w in _WORD.findall(text)) for ref, text in verses.items() if text}


def learn_lexicon(pairs):
    """{word: its up to 3 likeliest translations} both ways, by the Dice coefficient of the two
    words' co-occurrence in the verse pairs (en word set, es word set); only words in fewer than
    30% of the verses, pairs seen twice (or two words seen once, together), Dice >= 0.2."""
    df1, df2, both = {}, {}, {}
    for words1, words2 in pairs:
        for w in words1:
            df1[w] = df1.get(w, 0) + 1
        for w in words2:
            df2[w] = df2.get(w, 0) + 1
    cap = 0.3 * len(pairs)
    for words1, words2 in pairs:
        kept2 = [w for w in words2 if df2[w] < cap]
        for w1 in words1:
            if df1[w1] < cap:
                for w2 in kept2:
                    both[w1, w2] = both.get((w1, w2), 0) + 1
    lex1, lex2 = {}, {}
    for (w1, w2), n in both.items():
        dice = 2 * n / (df1[w1] + df2[w2])
        if dice >= 0.2 and (n >= 2 or df1[w1] == df2[w2] == 1):
            lex1.setdefault(w1, []).append((dice, w2))
            lex2.setdefault(w2, []).append((dice, w1))
    return tuple({w: frozenset(t for _, t in sorted(cands, reverse=True)[:3]) for w, cands in lex.items()}
                 for lex in (lex1, lex2))


class BeadCost:
    """The cost of aligning English verses a with Spanish verses b: Gale & Church's
    -log(prior * P(length difference)) plus LEXICAL_WEIGHT * (len(a) + len(b)) / 2 *
    -log(0.02 + similarity), the similarity being the mean of the share of Spanish words that the
    lexicon predicts from the English words and the reverse."""

    def __init__(self, en, es, pairs):
        self.len1 = {r: len(t) for r, t in en.items() if t}
        self.len2 = {r: len(t) for r, t in es.items() if t}
        self.words1, self.words2 = word_sets(en), word_sets(es)
        refs = [r for r in sorted(self.len1) if r in self.len2 and r in pairs]
        lex1, lex2 = learn_lexicon([(self.words1[r], self.words2[r]) for r in refs])
        self.predicted1 = {r: frozenset().union(*(lex1.get(w, ()) for w in ws)) for r, ws in self.words1.items()}
        self.predicted2 = {r: frozenset().union(*(lex2.get(w, ()) for w in ws)) for r, ws in self.words2.items()}
        sum1, sum2 = sum(self.len1[r] for r in refs), sum(self.len2[r] for r in refs)
        self.c = c = sum2 / sum1
        self.s2 = sum((c * self.len1[r] - self.len2[r]) ** 2 / ((self.len1[r] + self.len2[r] / c) / 2)
                      for r in refs) / len(refs)

    def similarity(self, a, b):
        if not a or not b:
            return 0.0
        words1 = frozenset().union(*(self.words1[r] for r in a))
        words2 = frozenset().union(*(self.words2[r] for r in b))
        predicted1 = frozenset().union(*(self.predicted1[r] for r in a))
        predicted2 = frozenset().union(*(self.predicted2[r] for r in b))
        return (len(predicted1 & words2) / len(words2) + len(predicted2 & words1) / len(words1)) / 2

    def __call__(self, a, b, prior):
        l1, l2 = sum(self.len1[r] for r in a), sum(self.len2[r] for r in b)
        z = (self.c * l1 - l2) / math.sqrt(self.s2 * (l1 + l2 / self.c) / 2)
        length = -math.log(prior) - math.log(max(math.erfc(abs(z) / math.sqrt(2)), 1e-300))
        return length - LEXICAL_WEIGHT * (len(a) + len(b)) / 2 * math.log(0.02 + self.similarity(a, b))


def align_book(side1, side2, cost):
    """The cheapest alignment of two verse sequences of one book: [(i, n1, j, n2)] beads."""
    n, m = len(side1), len(side2)
    diagonal = [bisect.bisect_left(side2, ref) for ref in side1] + [m]
    best, back = {(0, 0): 0.0}, {}
    for i in range(n + 1):
        for j in range(max(0, diagonal[i] - BAND), min(m, diagonal[i] + BAND) + 1):
            here = best.get((i, j))
            if here is None:
                continue
            for (d1, d2), prior in BEADS.items():
                if i + d1 <= n and j + d2 <= m:
                    total = here + cost(side1[i:i + d1], side2[j:j + d2], prior)
                    if total < best.get((i + d1, j + d2), math.inf):
                        best[i + d1, j + d2] = total
                        back[i + d1, j + d2] = (d1, d2)
    if (n, m) not in back and (n or m):
        raise common.PrepError("the verse alignment found no path (the two sides differ too much)")
    beads, i, j = [], n, m
    while i or j:
        d1, d2 = back[i, j]
        i, j = i - d1, j - d2
        beads.append((i, d1, j, d2))
    return beads[::-1]


def align(en, es):
    """(kept refs, {ref: reason}, BeadCost) for the verses of the two {ref: text} maps."""
    dropped = {}
    for ref in sorted(set(en) | set(es)):
        if not en.get(ref) and not es.get(ref):
            dropped[ref] = "empty in both"
        elif not en.get(ref):
            dropped[ref] = "empty in KJV" if ref in en else "not in KJV"
        elif not es.get(ref):
            dropped[ref] = "empty in RV1909" if ref in es else "not in RV1909"
    cost = BeadCost(en, es, set(en) & set(es) - set(dropped))
    books = {}
    for ref in sorted(set(en) | set(es)):
        books.setdefault(ref[0], []).append(ref)
    kept = []
    for refs in books.values():
        # One alignment per book: a verse can move across a chapter boundary (Num 12:16 = 13:1).
        side1 = [r for r in refs if en.get(r)]
        side2 = [r for r in refs if es.get(r)]
        confirmed = {side1[i] for i, n1, j, n2 in align_book(side1, side2, cost)
                     if n1 == n2 == 1 and side1[i] == side2[j]}
        for ref in refs:
            if ref in dropped:
                continue
            if ref in confirmed:
                kept.append(ref)
            else:
                dropped[ref] = "verse alignment disagrees (different verse division)"
    return kept, dropped, cost


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
            if _LEFT_OVER.search(text):
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
