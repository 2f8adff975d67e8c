"""Tests of the English-Spanish Bible corpus shipped in data-prep/bible/kjv-rv1909/: the files against
their README (line counts, sha256), no markup left, the split rule; build_bible_corpus.py's cleaning
and alignment rules on small made-up inputs (diatheke is faked where needed); prepare_bible.py end to
end on the shipped corpus, into fairseq data with a joined dictionary. No network, no apt, nothing
outside this checkout. Set BIBLE_REBUILD=1 (with diatheke and the SWORD modules installed) to also
rebuild the corpus and compare it with the shipped files."""
import hashlib
import lzma
import os
import random
import re
import shutil
import subprocess
import sys

import pytest

from fairseq_helpers import assert_one_line_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_PREP = os.path.join(ROOT, "data-prep")
sys.path.insert(0, DATA_PREP)

import bible_align  # noqa: E402
import bible_text  # noqa: E402
import build_bible_corpus as build  # noqa: E402
import common  # noqa: E402
import moses  # noqa: E402
import prepare_bible  # noqa: E402

CORPUS = prepare_bible.CORPUS_DIR
SPLITS = ("train", "valid", "test")
SIZES = {"valid": 1000, "test": 1500}
INSTALL = "apt-get install diatheke sword-text-kjv sword-text-sparv"


def run(script, *args, env=None):
    return subprocess.run([sys.executable, os.path.join(DATA_PREP, script), *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env)


def corpus_lines(name):
    return common.read_lines(os.path.join(CORPUS, name))


@pytest.fixture(scope="module")
def refs():
    """[(split, line, OSIS ref)] of refs.tsv."""
    rows = [line.split("\t") for line in corpus_lines("refs.tsv")]
    assert rows[0] == ["split", "line", "ref"]
    return [(split, int(line), ref) for split, line, ref in rows[1:]]


def bible_order(osis):
    book, chapter, verse = osis.rsplit(".", 2)
    return bible_text.BOOK_INDEX[book], int(chapter), int(verse)


# ------------------------------------------------------------------- the shipped files

def test_files_match_the_readme():
    with open(os.path.join(CORPUS, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    table = {m.group(1): (int(m.group(2)), int(m.group(3)), m.group(4)) for m in
             re.finditer(r"^\| (\S+) \| (\d+) \| (\d+) \| ([0-9a-f]{64}) \|$", readme, re.M)}
    shipped = sorted(name for name in os.listdir(CORPUS) if name != "README.md")
    assert sorted(table) == shipped
    assert len(shipped) == 8
    for name, (lines, size, sha256) in table.items():
        path = os.path.join(CORPUS, name)
        assert os.path.getsize(path) == size, name
        with (lzma.open if name.endswith(".xz") else open)(path, "rb") as f:
            data = f.read()
        assert hashlib.sha256(data).hexdigest() == sha256, name
        assert data.count(b"\n") == lines and data.endswith(b"\n"), name
    assert sum(size for _, size, _ in table.values()) < 3_000_000
    for split in SPLITS:
        assert table[f"{split}.en.xz"][0] == table[f"{split}.es.xz"][0] == SIZES.get(split, 28360)
    assert "Public Domain" in readme and "DistributionLicense" in readme
    for fragment in ("engKJV2006eb", "spaRV1909eb", "sword-text-kjv", "sword-text-sparv", INSTALL,
                     "build_bible_corpus.py --output data-prep/bible/kjv-rv1909 --xz", build.SPLIT_SALT):
        assert fragment in readme, fragment


MARKUP = re.compile(r"[<>{}\[\]\\\u00b6]|\b[HG]\d{1,5}\b|\d|^ | $|  |&\w+;")


def test_no_markup_left():
    for split in SPLITS:
        for lang in ("en", "es"):
            lines = corpus_lines(f"{split}.{lang}")
            for number, line in enumerate(lines, 1):
                assert line and not MARKUP.search(line), f"{split}.{lang}:{number}: {line}"
    # The rules that made them: Psalm titles in verse 1 on both sides, Spanish drop capitals recased.
    train = dict(zip(corpus_lines("train.en"), corpus_lines("train.es")))
    assert train["In the beginning God created the heaven and the earth."] == \
        "En el principio crió Dios los cielos y la tierra."
    assert train["A Psalm of David. The LORD is my shepherd; I shall not want."] == \
        "Salmo de David. Jehová es mi pastor; nada me faltará."
    spanish = [line for split in SPLITS for line in corpus_lines(f"{split}.es")]
    assert not any(line.startswith(("ALEPH", "BETH")) or "Fué escrita" in line for line in spanish)
    # No drop capital is left ("EN el principio"); JAH is a name the RV1909 always writes so.
    drop_capital = re.compile(r"(^|[.:;?!] )\W*(?!JAH\b)[A-ZÁÉÍÓÚÑ]{2,} [a-záéíóúñ]")
    assert [line for line in spanish if drop_capital.search(line)] == []


def test_split_rule_and_no_verse_in_two_splits(refs):
    seen = [ref for _, _, ref in refs]
    assert len(seen) == len(set(seen)) == 30860
    for split in SPLITS:
        rows = [(line, ref) for s, line, ref in refs if s == split]
        assert [line for line, _ in rows] == list(range(1, len(corpus_lines(f"{split}.en")) + 1))
        assert [r for _, r in rows] == sorted((r for _, r in rows), key=bible_order)  # Bible order
    ranked = sorted(seen, key=lambda r: hashlib.sha256((build.SPLIT_SALT + r).encode()).hexdigest())
    assert {r for s, _, r in refs if s == "valid"} == set(ranked[:1000])
    assert {r for s, _, r in refs if s == "test"} == set(ranked[1000:2500])
    # Every KJV verse is either in the corpus or in dropped.tsv with a reason.
    dropped = [line.split("\t") for line in corpus_lines("dropped.tsv")[1:]]
    assert not {r for r, _ in dropped} & set(seen)
    assert len(dropped) + len(seen) == 31102
    assert {reason for _, reason in dropped} == {"empty in RV1909",
                                                  "verse alignment disagrees (different verse division)"}
    # The Spanish Num 13:1 is the English Num 12:16: the whole shifted chapter is out.
    assert {f"Num.13.{v}" for v in range(1, 34)} <= {r for r, _ in dropped}


# ------------------------------------------------------------------- build_bible_corpus.py's rules

def test_strip_markup():
    kjv = ('<w savlm="strong:H7225">In</w> the \\nd <w savlm="strong:H3068">LORD</w></divineName> ¶ '
           '<transChange type="added">[but] are</transChange><note type="x">a note</note> '
           '<q marker="">x</q>&amp;<milestone type="line"/>  ')
    assert bible_text.strip_markup(kjv, "en") == "In the LORD but are x&"
    rv = ('<w savlm="strong:H3318">sáca</w><transChange type="added">lo</transChange> '
          '<transChange type="added">Salmo</transChange><w savlm="strong:H1732">de David</w>, '
          '<w savlm="strong:H3808">y no</w><transChange type="added">lo</transChange>hizo')
    assert bible_text.strip_markup(rv, "es") == "sácalo Salmo de David, y no lo hizo"


def test_psalm_titles_and_repeated_headings():
    ps, gen = bible_text.BOOK_INDEX["Ps"], bible_text.BOOK_INDEX["Gen"]
    title = '<title canonical="true" type="psalm">A <w savlm="strong:H4210">Psalm</w> of David.</title> <lg sID="1"/>'
    other = '<title canonical="true" type="psalm">A Song.</title> <lg sID="2"/>'
    raw = [((ps, 2, 12), "", "Kiss the Son."), ((ps, 3, 1), title, "LORD, how"), ((ps, 3, 2), title, "Many"),
           ((ps, 4, 1), other, "Hear me"), ((ps, 4, 2), other, "O ye sons")]
    verses, stats = bible_text.english_verses(raw)
    assert [verses[r] for r, _, _ in raw] == ["Kiss the Son.", "A Psalm of David. LORD, how", "Many",
                                              "A Song. Hear me", "O ye sons"]
    assert stats == {"Psalm titles moved into verse 1": 2}
    with pytest.raises(common.PrepError, match="unexpected heading before Gen.1.2"):
        bible_text.english_verses([((gen, 1, 1), "", "In"), ((gen, 1, 2), "<title>Creation</title>", "And")])


def test_spanish_fixes():
    ps, rom, gen = bible_text.BOOK_INDEX["Ps"], bible_text.BOOK_INDEX["Rom"], bible_text.BOOK_INDEX["Gen"]
    raw = [((gen, 1, 1), "", "EN el principio crió Dios"), ((gen, 1, 2), "", "Y dijo Jehová á Moisés en Egipto"),
           ((gen, 2, 1), "", "Y JEHOVÁ DIJO á MOISÉS"), ((gen, 3, 1), "", "Salmo de David. ¡OH Dios"),
           ((ps, 119, 1), "", "ALEPH. BIENAVENTURADOS los perfectos"), ((ps, 119, 9), "", "BETH ¿Con qué"),
           ((rom, 16, 27), "", "sea gloria para siempre. Amén. Fué escrita de Corinto á los Romanos."),
           ((rom, 16, 28), "", "")]
    verses, stats = bible_text.spanish_verses(raw)
    assert [verses[r] for r, _, _ in raw] == [
        "En el principio crió Dios", "Y dijo Jehová á Moisés en Egipto", "Y Jehová dijo á MOISÉS",
        "Salmo de David. ¡Oh Dios", "Bienaventurados los perfectos", "¿Con qué",
        "sea gloria para siempre. Amén.", ""]
    assert stats == {"Psalm 119 letter headings removed": 2, "epistle subscriptions removed": 1,
                     "chapter-initial capitals recased": 4}


def test_alignment_drops_shifted_verses():
    """A made-up 'book' whose Spanish side is the English one (so the lexicon to learn is the
    identity), but with verse 2:4 empty and the rest of chapter 2 one verse late, as in Num 12-13
    (a verse moved across the chapter boundary too): only those verses are dropped."""
    rng = random.Random(1)
    vocabulary = [f"w{i}" for i in range(400)]
    en, es = {}, {}
    for chapter in (1, 2, 3):
        for verse in range(1, 31):
            en[0, chapter, verse] = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(3, 25)))
    refs = sorted(en)
    for ref in refs:
        es[ref] = en[ref]
    shifted = [(0, 2, v) for v in range(4, 31)]
    es[0, 2, 4] = ""
    for ref in shifted[1:]:
        es[ref] = en[ref[0], ref[1], ref[2] - 1]
    es[0, 3, 1] = en[0, 2, 30] + " " + en[0, 3, 1]  # the last verse of chapter 2 moved into 3:1
    kept, dropped, _ = bible_align.align(en, es)
    assert dropped[0, 2, 4] == "empty in RV1909"
    assert set(dropped) == set(shifted) | {(0, 3, 1)}
    assert kept == [r for r in refs if r not in dropped]


def fake_diatheke(folder, listed):
    """A diatheke on PATH whose module list holds only `listed`."""
    folder.mkdir(exist_ok=True)
    script = folder / "diatheke"
    lines = "\\n".join(["Biblical Texts:"] + [f"{m} : x" for m in listed])
    script.write_text(f"#!/bin/sh\nprintf '{lines}\\n'\n")
    script.chmod(0o755)
    return dict(os.environ, PATH=str(folder))


def test_build_without_diatheke_or_modules(tmp_path):
    result = run("build_bible_corpus.py", "--output", tmp_path / "out", env=dict(os.environ, PATH=str(tmp_path)))
    assert_one_line_error(result, "build_bible_corpus", "diatheke is not installed", INSTALL)
    env = fake_diatheke(tmp_path / "bin", ["engKJV2006eb"])
    result = run("build_bible_corpus.py", "--output", tmp_path / "out", env=env)
    assert_one_line_error(result, "build_bible_corpus", "spaRV1909eb is not installed", INSTALL)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(os.environ.get("BIBLE_REBUILD") != "1" or shutil.which("diatheke") is None,
                    reason="set BIBLE_REBUILD=1, with diatheke and the SWORD modules installed")
def test_rebuild_reproduces_the_shipped_corpus():
    result = run("build_bible_corpus.py", "--check", CORPUS)
    assert result.returncode == 0, result.stderr
    assert "aligned: 30860 verse pairs" in result.stdout


# ------------------------------------------------------------------- prepare_bible.py

@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    base = tmp_path_factory.mktemp("bible")
    result = run("prepare_bible.py", "--output", base / "text", "--binarize", base / "bin", "--workers", 1)
    assert result.returncode == 0, result.stderr
    return base / "text", base / "bin", result


def test_prepare_bible_text(prepared):
    text, _, result = prepared
    assert result.stdout.split("\n")[:3] == ["train: 27976 pairs", "valid: 1000 pairs", "test: 1500 pairs"]
    assert "Warning" not in result.stderr and "warn" not in result.stderr.lower(), result.stderr
    assert len(common.read_lines(str(text / "code"))) == 8001  # '#version' + 8000 merges
    for split in SPLITS:
        for lang in ("en", "es"):
            bpe = common.read_lines(str(text / f"{split}.{lang}"))
            plain = common.read_lines(str(text / "tmp" / f"{split}.{lang}"))
            assert [line.replace("@@ ", "") for line in bpe] == plain
            assert all(line == moses.perl_lc(line) for line in plain)
    assert common.read_lines(str(text / "tmp" / "test.en")) == \
        moses.LineSteps("en", lowercase=True)(corpus_lines("test.en"))
    assert common.read_lines(str(text / "train.en"))[0] == "in the beginning god created the heaven and the earth ."


def test_prepare_bible_binarized_with_joined_dictionary(prepared):
    _, binary, _ = prepared
    from fairseq.tasks.translation import TranslationConfig, TranslationTask

    with open(binary / "dict.en.txt", "rb") as en, open(binary / "dict.es.txt", "rb") as es:
        assert en.read() == es.read()
    task = TranslationTask.setup_task(TranslationConfig(data=str(binary), source_lang="en", target_lang="es",
                                                        dataset_impl="mmap"))
    assert task.src_dict.symbols == task.tgt_dict.symbols and 7000 < len(task.src_dict) < 9000
    for split, size in (("train", 27976), ("valid", 1000), ("test", 1500)):
        task.load_dataset(split)
        dataset = task.dataset(split)
        assert len(dataset) == size
        sample = dataset[0]
        assert sample["source"][-1] == task.src_dict.eos() and task.src_dict.unk() not in sample["source"]


def test_prepare_bible_limit_reverse_and_errors(tmp_path):
    result = run("prepare_bible.py", "--output", tmp_path / "out", "--limit", 150, "--src", "es", "--cased",
                 "--bpe-tokens", 200, "--workers", 1)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert common.read_lines(str(out / "tmp" / "valid.es")) == moses.LineSteps("es")(corpus_lines("valid.es")[:150])
    assert len(common.read_lines(str(out / "test.en"))) == 150 and "test: 150 pairs" in result.stdout
    assert len(common.read_lines(str(out / "code"))) == 201

    assert_one_line_error(run("prepare_bible.py", "--output", tmp_path / "o", "--corpus", tmp_path / "none"),
                          "prepare_bible", "no such folder")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split in SPLITS:
        for lang, n in (("en", 3), ("es", 3 if split != "test" else 2)):
            common.write_lines(str(corpus / f"{split}.{lang}"), ["a b c"] * n)
    assert_one_line_error(run("prepare_bible.py", "--output", tmp_path / "o", "--corpus", corpus),
                          "prepare_bible", "line counts differ", "test.en")
    os.remove(corpus / "valid.es")
    assert_one_line_error(run("prepare_bible.py", "--output", tmp_path / "o", "--corpus", corpus),
                          "prepare_bible", "missing input file", "valid.es")
