"""The two Bibles as verses: read from Debian's SWORD modules with diatheke, cleaned of their markup.

The "read", "clean", "KJV" and "RV1909" steps of build_bible_corpus.py (its docstring has the rules):
``read_module`` gives every verse of a module with its OSIS markup, ``english_verses`` and
``spanish_verses`` the plain text of each verse, keyed by (book index, chapter, verse).
"""
import html
import os
import re
import shutil
import subprocess
import unicodedata

import common

INSTALL = "apt-get install diatheke sword-text-kjv sword-text-sparv"
MODULES = {"en": "engKJV2006eb", "es": "spaRV1909eb"}  # Debian: sword-text-kjv, sword-text-sparv
KEY = "Gen 1:1-Rev 22:21"

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
LEFT_OVER = re.compile(r"[<>{}\\\u00b6\[\]]|\b[HG]\d{1,5}\b")
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
