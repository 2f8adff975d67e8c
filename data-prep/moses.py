"""The Moses perl scripts that fairseq's examples/translation/prepare-*.sh pipe text through,
re-implemented in Python (sacremoses where it exists, and what it lacks written here):

  tokenizer.perl [-a] -l L            -> LineSteps(tokenize, aggressive): sacremoses MosesTokenizer,
                                         escaping on (the perl default), plus the current perl rule
                                         for a last word ending in '.' (PerlMosesTokenizer)
  normalize-punctuation.perl L        -> LineSteps(normalize): MosesPunctNormalizer(perl_parity=True)
  remove-non-printing-char.perl       -> remove_non_printing(): every \\p{C} character to a space
  lowercase.perl                      -> perl_lc()
  clean-corpus-n.perl -ratio R c l1 l2 out MIN MAX -> clean_corpus(), clean_files()
  grep '<seg id' | sed ...            -> xml_segments() (the recipes' .xml/.sgm extraction)
"""
import itertools
import re

import regex
from sacremoses import MosesPunctNormalizer, MosesTokenizer

from common import PrepError, iter_lines

# Perl's \s on character strings (clean-corpus-n and tokenizer.perl read with :utf8). Python's \s
# would also match \x1c-\x1f, which perl does not count as whitespace.
PERL_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_PERL_SPACES = re.compile(f"[{PERL_SPACE}]+")
_BLANK_LINE = re.compile(f"[{PERL_SPACE}]*")
_NON_PRINTING = regex.compile(r"\p{C}")


def perl_lc(text):
    """perl's lc(): like str.lower() but without Python's context rule for a word-final capital
    sigma (lc maps every capital sigma to a plain small sigma)."""
    if "\u03a3" in text:
        return "".join(ch.lower() for ch in text)
    return text.lower()


def remove_non_printing(text):
    """remove-non-printing-char.perl: s/\\p{C}/ /g (control, format, unassigned, private use)."""
    return _NON_PRINTING.sub(" ", text)


class PerlMosesTokenizer(MosesTokenizer):
    """sacremoses' tokenizer plus one rule of the current tokenizer.perl that sacremoses lacks:
    the last word of a line that ends in '.' always has its period split off ("u.s." -> "u.s .",
    German "usw." -> "usw ."), even when it is a non-breaking prefix. The released IWSLT14
    reference files were made with that perl version; without the rule 0-6 lines per test file
    differ from them."""

    _LAST_WORD_PERIOD = re.compile(r"^(\S+)\.$")

    def handles_nonbreaking_prefixes(self, text):
        tokens = super().handles_nonbreaking_prefixes(text).split(" ")
        match = self._LAST_WORD_PERIOD.match(tokens[-1])
        if match:
            tokens[-1] = match.group(1) + " ."
        return " ".join(tokens)


class LineSteps:
    """The per-line part of a pipeline, picklable so a multiprocessing pool can run it on chunks.

    Order as in the recipes: normalize-punctuation, remove-non-printing-char, tokenizer, lowercase.
    The sacremoses objects are built once per process (cached by configuration)."""

    _cache = {}

    def __init__(self, lang, normalize=False, non_printing=False, tokenize=True, aggressive=False,
                 lowercase=False, perl_last_word=True):
        self.config = (lang, normalize, non_printing, tokenize, aggressive, lowercase, perl_last_word)

    def _tools(self):
        tools = LineSteps._cache.get(self.config)
        if tools is None:
            lang, perl_last_word = self.config[0], self.config[-1]
            tokenizer = (PerlMosesTokenizer if perl_last_word else MosesTokenizer)(lang)
            tools = (MosesPunctNormalizer(lang, perl_parity=True), tokenizer)
            LineSteps._cache[self.config] = tools
        return tools

    def __call__(self, chunk):
        _, normalize, non_printing, tokenize, aggressive, lowercase, _ = self.config
        normalizer, tokenizer = self._tools()
        out = []
        for line in chunk:
            if normalize:
                # The perl script sees the line with its '\n', which matters to its rule
                # s/(\.+)"(\s*[^<])/"$1$2/ at the end of a line; sacremoses strips the result.
                line = normalizer.normalize(line + "\n")
            if non_printing:
                line = remove_non_printing(line)
            if tokenize and not _BLANK_LINE.fullmatch(line):
                # tokenizer.perl copies blank (whitespace-only) lines through untouched.
                line = tokenizer.tokenize(line, aggressive_dash_splits=aggressive, return_str=True,
                                          escape=True)
            if lowercase:
                line = perl_lc(line)
            out.append(line)
        return out


# --------------------------------------------------------------------------- corpus steps

SEG_OPEN = re.compile(r'<seg id="[0-9]*">[ \t\n\r\f\v]*')
SEG_CLOSE = re.compile(r"[ \t\n\r\f\v]*</seg>[ \t\n\r\f\v]*")


def xml_segments(lines):
    """The recipes' extraction of IWSLT .xml / WMT .sgm segments:
    grep '<seg id' | sed -e 's/<seg id="[0-9]*">\\s*//g' -e 's/\\s*<\\/seg>\\s*//g' -e "s/\\’/\\'/g"
    (sed's \\s taken as ASCII whitespace; the tokenizer collapses any other whitespace anyway)."""
    out = []
    for line in lines:
        if "<seg id" in line:
            line = SEG_CLOSE.sub("", SEG_OPEN.sub("", line))
            out.append(line.replace("\u2019", "'"))
    return out


def xml_documents(lines):
    """[(docid, [segment, ...]), ...] with the segments extracted as xml_segments() does."""
    docs = []
    for line in lines:
        match = re.search(r'<doc docid="([^"]*)"', line)
        if match:
            docs.append((match.group(1), []))
        elif "<seg id" in line:
            if not docs:
                raise PrepError("a <seg> comes before any <doc>")
            docs[-1][1].extend(xml_segments([line]))
    return docs


def _clean_side(text, factored):
    if not factored:
        text = text.replace("|", "")
    text = _PERL_SPACES.sub(" ", text)
    if text.startswith(" "):
        text = text[1:]
    if text.endswith(" "):
        text = text[:-1]
    return text


def clean_corpus(src_lines, tgt_lines, ratio=9.0, min_len=1, max_len=50, max_word_length=1000):
    """clean-corpus-n.perl -ratio RATIO corpus l1 l2 out MIN MAX, on two iterables of lines;
    yields the kept (cleaned) pairs.

    Per pair, as the perl script: drop '|' unless the first pair had one (factored corpus),
    squeeze whitespace and strip one space at each end; drop the pair if a side is empty, has
    fewer than MIN or more than MAX words, if words(l1)/words(l2) or its inverse exceeds RATIO,
    or if a word is longer than max_word_length characters (the script's default, 1000).
    """
    long_word = re.compile(f"[^{PERL_SPACE}|]{{{max_word_length + 1}}}")
    blank_factor = re.compile(r"[ |]\|")
    factored = None
    missing = object()
    for number, (f, e) in enumerate(itertools.zip_longest(src_lines, tgt_lines, fillvalue=missing), 1):
        if f is missing or e is missing:
            raise PrepError(f"clean-corpus: the two sides differ in length from line {number} on")
        if factored is None:
            factored = "|" in f or "|" in e
        f, e = _clean_side(f, factored), _clean_side(e, factored)
        if not f or not e:
            continue
        fc, ec = len(f.split(" ")), len(e.split(" "))
        if ec > max_len or fc > max_len or ec < min_len or fc < min_len:
            continue
        if ec / fc > ratio or fc / ec > ratio:
            continue
        if long_word.search(e) or long_word.search(f):
            continue
        if factored and (blank_factor.search(f) or blank_factor.search(e)):
            raise PrepError(f"clean-corpus: blank factor on line {number}")
        yield f, e


def clean_files(prefix, src, tgt, out_prefix, ratio, min_len, max_len, lowercase_prefix=None):
    """clean-corpus-n.perl -ratio R PREFIX SRC TGT OUT_PREFIX MIN MAX; with lowercase_prefix, also
    lowercase.perl < OUT_PREFIX.L > LOWERCASE_PREFIX.L. Returns the number of pairs kept."""
    pairs = clean_corpus(iter_lines(f"{prefix}.{src}"), iter_lines(f"{prefix}.{tgt}"), ratio, min_len, max_len)
    kept = 0
    paths = [f"{out_prefix}.{src}", f"{out_prefix}.{tgt}"]
    if lowercase_prefix:
        paths += [f"{lowercase_prefix}.{src}", f"{lowercase_prefix}.{tgt}"]
    files = [open(path, "w", encoding="utf-8", newline="\n") for path in paths]
    try:
        for f, e in pairs:
            files[0].write(f + "\n")
            files[1].write(e + "\n")
            if lowercase_prefix:
                files[2].write(perl_lc(f) + "\n")
                files[3].write(perl_lc(e) + "\n")
            kept += 1
    finally:
        for handle in files:
            handle.close()
    return kept
