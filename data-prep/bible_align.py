"""Which verse pairs the corpus keeps: a sentence alignment of each book, by lengths and words.

The "align" step of build_bible_corpus.py: Gale & Church's (1993) dynamic programme on character
lengths, plus a lexical cost from Dice coefficients learned on the reference-aligned pairs (Moore 2002,
hunalign). A pair is kept where both verses are non-empty and the alignment pairs them one-to-one.
"""
import bisect
import math
import re

import common

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
