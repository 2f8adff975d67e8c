"""Tests of data-prep/: the bundled IWSLT'14 sample, prepare_iwslt14.py, prepare_wmt17_en_de.py and
prepare_parallel.py on small fixtures made here (from the sample's real sentences), and the Moses
re-implementations in data-prep/moses.py. No network, nothing outside this checkout."""
import hashlib
import importlib.util
import lzma
import os
import re
import subprocess
import sys
import tarfile

import pytest

from fairseq_helpers import assert_one_line_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_PREP = os.path.join(ROOT, "data-prep")
sys.path.insert(0, DATA_PREP)

import common  # noqa: E402
import moses  # noqa: E402
import prepare_iwslt14  # noqa: E402
import prepare_sample  # noqa: E402

SAMPLE = prepare_sample.SAMPLE_DIR
XML_DIR = os.path.join(SAMPLE, "orig", "de-en")


def run(script, *args, ok=True):
    result = subprocess.run([sys.executable, os.path.join(DATA_PREP, script), *map(str, args)],
                            capture_output=True, text=True, timeout=300)
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def lines(path):
    return common.read_lines(str(path))


def sample_segments(name, lang, n=None):
    """Raw (untokenized) segments of one shipped XML file."""
    segs = moses.xml_segments(common.iter_lines(os.path.join(XML_DIR, f"{name}.de-en.{lang}.xml")))
    return segs[:n] if n else segs


# ------------------------------------------------------------------- the bundled sample

@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    base = tmp_path_factory.mktemp("sample")
    result = run("prepare_sample.py", "--output", base / "text", "--binarize", base / "bin", "--workers", "1")
    return base / "text", base / "bin", result.stdout


def test_sample_split_line_counts(sample):
    text, _, stdout = sample
    for split, expected in prepare_sample.EXPECTED.items():
        assert len(lines(text / f"{split}.de")) == len(lines(text / f"{split}.en")) == expected
        assert f"{split}: {expected} pairs" in stdout
    # 5863 segment pairs before clean-corpus-n; valid/test are not cleaned.
    assert len(lines(text / "tmp" / "train.tok.de")) == len(lines(text / "tmp" / "train.tok.en")) == 5863
    assert prepare_sample.EXPECTED["valid"] + prepare_sample.EXPECTED["test"] == 887


def test_sample_is_tokenized_lowercased_and_bpe(sample):
    text, _, _ = sample
    for split in prepare_sample.EXPECTED:
        for lang in ("de", "en"):
            bpe, plain = lines(text / f"{split}.{lang}"), lines(text / "tmp" / f"{split}.{lang}")
            assert any("@@ " in line for line in bpe)
            assert not any("@@" in line for line in plain)
            # Undoing BPE gives back the tokenized text, which is lowercase Moses output.
            assert [line.replace("@@ ", "") for line in bpe] == plain
            assert all(line == moses.perl_lc(line) for line in plain)
    assert "we &apos;re actually starting at a new point" in lines(text / "test.en")[1]
    assert lines(text / "code") == common.read_lines(os.path.join(SAMPLE, "iwslt14.tokenized.de-en", "code"))


def test_sample_binarized(sample):
    text, binary, _ = sample
    from fairseq.data import Dictionary, data_utils

    for lang in ("de", "en"):
        assert len(Dictionary.load(str(binary / f"dict.{lang}.txt"))) > 1000
        for split, expected in prepare_sample.EXPECTED.items():
            dataset = data_utils.load_indexed_dataset(str(binary / f"{split}.de-en.{lang}"), None)
            assert len(dataset) == expected


def test_sample_files_are_the_unmodified_release():
    """Every shipped file is listed in SOURCE.md with the sha256 of its uncompressed content."""
    table = {}
    with open(os.path.join(SAMPLE, "SOURCE.md"), encoding="utf-8") as f:
        for row in f:
            match = re.match(r"\| (\S+\.xz) \| (\d+) \| (\d+) \| ([0-9a-f]{64}) \|", row)
            if match:
                table[match.group(1)] = match.group(4)
    shipped = sorted(os.path.relpath(os.path.join(d, f), SAMPLE) for d, _, files in os.walk(SAMPLE)
                     for f in files if f.endswith(".xz"))
    assert len(shipped) == 12
    for name in shipped:
        with lzma.open(os.path.join(SAMPLE, name)) as f:
            assert hashlib.sha256(f.read()).hexdigest() == table[name], name
    with open(os.path.join(DATA_PREP, "sample", "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert "CC BY-NC-ND" in readme
    for name in prepare_sample.TRAIN_SETS + (prepare_sample.HELD_OUT_SET,):
        assert name in readme


# ------------------------------------------------------------------- prepare_iwslt14.py

TALKS = (("805", 0, 25), ("790", 25, 60))  # (talkid, first, end) over tst2010's first 60 segments


def make_iwslt_source(folder, extra_de_line=False, empty_en=False):
    """A small de-en/ folder in the release's formats: train.tags with its metadata lines (built
    from real tst2010 sentences) and the five dev/test XML files (their first 6 segments)."""
    folder.mkdir(parents=True, exist_ok=True)
    for lang in ("de", "en"):
        segs = sample_segments("IWSLT14.TED.tst2010", lang, 60)
        out = []
        for talkid, first, end in TALKS:
            out += [f"<url>http://www.ted.com/talks/{talkid}.html</url>", "<keywords>talks, music</keywords>",
                    f"<talkid>{talkid}</talkid>", f"<title>Title {talkid}: Musik</title>",
                    f"<description>Description of talk {talkid}.</description>"]
            out += segs[first:end]
        if extra_de_line and lang == "de":
            out.append("Eine Zeile zu viel.")
        common.write_lines(str(folder / f"train.tags.de-en.{lang}"), [] if empty_en and lang == "en" else out)
        for name in prepare_iwslt14.TEST_SETS:
            xml = [line for line in common.iter_lines(os.path.join(XML_DIR, f"{name}.de-en.{lang}.xml"))][:16]
            xml = [line for line in xml if "<seg id" not in line or int(re.search(r'id="(\d+)"', line)[1]) <= 6]
            common.write_lines(str(folder / f"{name}.de-en.{lang}.xml"), xml + ["</doc>", "</srcset>", "</mteval>"])
    return folder


@pytest.fixture(scope="module")
def iwslt(tmp_path_factory):
    base = tmp_path_factory.mktemp("iwslt")
    source = make_iwslt_source(base / "orig" / "de-en")
    run("prepare_iwslt14.py", "--source-dir", base / "orig", "--output", base / "out", "--bpe-tokens", 300,
        "--workers", 2)
    return base, source, base / "out"


def test_iwslt14_steps(iwslt):
    _, _, out = iwslt
    tok = lines(out / "tmp" / "train.tags.de-en.tok.en")
    # The metadata lines are dropped, title/description tags stripped (their text stays).
    assert len(tok) == 2 * 2 + 60  # per talk: title and description, then its segments
    assert not any("url" in line or "talkid" in line or "&lt;" in line for line in tok)
    assert "Title 805 : Musik" in lines(out / "tmp" / "train.tags.de-en.tok.de")
    cleaned = lines(out / "tmp" / "train.tags.de-en.en")
    assert len(cleaned) == len(lines(out / "tmp" / "train.tags.de-en.de")) < len(tok)
    assert cleaned == [moses.perl_lc(line) for line in lines(out / "tmp" / "train.tags.de-en.clean.en")]
    # valid = every 23rd cleaned line, train = the rest.
    assert lines(out / "tmp" / "valid.en") == cleaned[22::23]
    assert len(lines(out / "tmp" / "train.en")) + len(lines(out / "tmp" / "valid.en")) == len(cleaned)
    # test = the five sets in the script's order, 6 segments each.
    test = lines(out / "tmp" / "test.en")
    assert len(test) == 30
    assert test[:6] == lines(out / "tmp" / "IWSLT14.TED.dev2010.de-en.en")
    assert test[6:12] == lines(out / "tmp" / "IWSLT14.TEDX.dev2012.de-en.en")
    assert test[0].startswith("you know , one of the intense pleasures of travel")
    for split in ("train", "valid", "test"):
        assert len(lines(out / f"{split}.de")) == len(lines(out / f"{split}.en"))
        assert [line.replace("@@ ", "") for line in lines(out / f"{split}.en")] == lines(out / "tmp" / f"{split}.en")
    assert any("@@ " in line for line in lines(out / "train.de"))
    assert len(lines(out / "code")) <= 301


def test_iwslt14_archive_and_download_give_the_same(iwslt, tmp_path):
    base, source, out = iwslt
    archive = tmp_path / "de-en.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="de-en")
    run("prepare_iwslt14.py", "--archive", archive, "--output", tmp_path / "a", "--bpe-tokens", 300, "--workers", 1)
    run("prepare_iwslt14.py", "--url", archive.as_uri(), "--output", tmp_path / "d", "--bpe-tokens", 300,
        "--workers", 1)
    assert (tmp_path / "d" / "orig" / "de-en.tgz").is_file()
    for split in ("train", "valid", "test"):
        for lang in ("de", "en"):
            expected = lines(out / f"{split}.{lang}")
            assert lines(tmp_path / "a" / f"{split}.{lang}") == lines(tmp_path / "d" / f"{split}.{lang}") == expected


def test_iwslt14_given_codes_and_compressed_inputs(iwslt, tmp_path):
    _, source, _ = iwslt
    packed = tmp_path / "de-en"
    packed.mkdir()
    for path in source.iterdir():
        with open(path, "rb") as f, lzma.open(packed / (path.name + ".xz"), "wb") as g:
            g.write(f.read())
    codes = os.path.join(SAMPLE, "iwslt14.tokenized.de-en", "code.xz")
    run("prepare_iwslt14.py", "--source-dir", packed, "--output", tmp_path / "out", "--bpe-codes", codes,
        "--workers", 1)
    assert lines(tmp_path / "out" / "code") == common.read_lines(codes)
    # The official codes on the official dev2010 text give the released test.en, line 3.
    assert lines(tmp_path / "out" / "test.en")[2] == \
        "and of course , we all share the same adap@@ tive im@@ per@@ a@@ tives ."


@pytest.mark.parametrize("case, fragments", [
    ("mismatch", ["line counts differ", "train.tags.de-en.de has 65 lines", "train.tags.de-en.en has 64"]),
    ("empty", ["empty file", "train.tags.de-en.en"]),
    ("language", ["unknown language code 'fr'", "de, en"]),
    ("missing", ["missing input file", "IWSLT14.TED.tst2012.de-en.en.xml"]),
    ("xml-mismatch", ["line counts differ", "IWSLT14.TED.tst2011.de-en.de.xml has 6 lines"]),
    ("bad-archive", ["cannot read archive"]),
])
def test_iwslt14_errors(tmp_path, case, fragments):
    source = make_iwslt_source(tmp_path / "de-en", extra_de_line=case == "mismatch", empty_en=case == "empty")
    args = ["--source-dir", source]
    if case == "language":
        args += ["--src", "fr"]
    elif case == "missing":
        os.remove(source / "IWSLT14.TED.tst2012.de-en.en.xml")
    elif case == "xml-mismatch":
        path = source / "IWSLT14.TED.tst2011.de-en.en.xml"
        common.write_lines(str(path), [line for line in lines(path) if 'seg id="6"' not in line])
    elif case == "bad-archive":
        (tmp_path / "de-en.tgz").write_text("not an archive")
        args = ["--archive", tmp_path / "de-en.tgz"]
    result = run("prepare_iwslt14.py", *args, "--output", tmp_path / "out", "--workers", 1, ok=False)
    assert_one_line_error(result, "prepare_iwslt14", *fragments)


# ------------------------------------------------------------------- prepare_wmt17_en_de.py

SGM_HEAD = ('<srcset setid="newstest2014" srclang="any">\n'
            '<doc sysid="ref" docid="1012-bbc" genre="news" origlang="en">\n<p>')


def make_wmt_fixtures(folder, news_commentary="news-commentary-v12.de-en"):
    """europarl and commoncrawl as plain PREFIX.{en,de} files, news-commentary as the release's
    .tgz (training/...), newstest2014 as a test-full/ folder of .sgm files."""
    en = sample_segments("IWSLT14.TED.tst2011", "en", 150)
    de = sample_segments("IWSLT14.TED.tst2011", "de", 150)
    # Lines for the steps under test: punctuation normalization, a non-printing character,
    # aggressive dash splitting, and a pair clean-corpus drops (ratio > 1.5).
    en[0] = "The \u201cwell-known\u201d effect \u2013 here\u2026"
    de[0] = "Der \u201ebekannte\u201c Effekt \u2013 hier\u2026"
    en[1], de[1] = "A soft\u00adhyphen and a\tcontrol\x07char .", "Ein weiches\u00adTrennzeichen ."
    en[2], de[2] = "one two three four five six seven eight nine ten", "eins zwei"
    (folder / "training").mkdir(parents=True)
    for corpus, sl in (("europarl-v7.de-en", slice(0, 60)), ("commoncrawl.de-en", slice(60, 100))):
        common.write_lines(str(folder / f"{corpus}.en"), en[sl])
        common.write_lines(str(folder / f"{corpus}.de"), de[sl])
    common.write_lines(str(folder / "training" / f"{news_commentary}.en"), en[100:150])
    common.write_lines(str(folder / "training" / f"{news_commentary}.de"), de[100:150])
    archive = folder / "training-parallel-nc.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder / "training", arcname="training")
    test = folder / "test-full"
    test.mkdir()
    long_line = " ".join(["word"] * 260)
    for name, segs in (("newstest2014-deen-src.en.sgm", ["India\u2019s new prime minister.", long_line]),
                       ("newstest2014-deen-ref.de.sgm", ["Indiens neuer Premierminister.", "Wort"])):
        body = "\n".join(f'<seg id="{i}">{s}</seg>' for i, s in enumerate(segs, 1))
        (test / name).write_text(f"{SGM_HEAD}\n{body}\n</p>\n</doc>\n</srcset>\n", encoding="utf-8")
    return dict(europarl=folder / "europarl-v7.de-en", commoncrawl=folder / "commoncrawl.de-en",
                news_commentary=archive, test=test)


def wmt_args(fx, out):
    return ["--europarl", fx["europarl"], "--commoncrawl", fx["commoncrawl"], "--news-commentary",
            fx["news_commentary"], "--newstest2014-dir", fx["test"], "--output", out, "--bpe-tokens", 200,
            "--workers", 2]


def test_wmt17_on_fixtures(tmp_path):
    fx = make_wmt_fixtures(tmp_path / "raw")
    out = tmp_path / "wmt17_en_de"
    result = run("prepare_wmt17_en_de.py", *wmt_args(fx, out))
    tok_en = lines(out / "tmp" / "train.tags.en-de.tok.en")
    tok_de = lines(out / "tmp" / "train.tags.en-de.tok.de")
    assert len(tok_en) == len(tok_de) == 150
    # normalize-punctuation: curly quotes to ", en dash to -, ... spelled out; -a splits dashes;
    # no lowercasing; remove-non-printing-char turned the soft hyphen and the control char into spaces.
    assert tok_en[0] == "The &quot; well @-@ known &quot; effect - here ..."
    assert tok_de[0] == "Der &quot; bekannte &quot; Effekt - hier ..."
    assert tok_en[1] == "A soft hyphen and a control char ."
    assert tok_de[1] == "Ein weiches Trennzeichen ."
    # valid = every 100th line, before cleaning; train = the rest.
    assert lines(out / "tmp" / "valid.en") == [tok_en[99]]
    assert len(lines(out / "tmp" / "train.de")) == 149
    # clean-corpus-n -ratio 1.5 after BPE drops the 10-words-vs-2 pair from train.
    train_en = [line.replace("@@ ", "") for line in lines(out / "train.en")]
    assert "one two three four five six seven eight nine ten" not in train_en
    assert len(train_en) == len(lines(out / "train.de")) < 149
    # test: ' for ’, tokenized with -a, BPE'd, and not cleaned (its 260-word line stays).
    test_en = [line.replace("@@ ", "") for line in lines(out / "test.en")]
    assert test_en[0] == "India &apos;s new prime minister ."
    assert len(test_en) == len(lines(out / "test.de")) == 2
    assert any("@@ " in line for line in lines(out / "train.en"))
    assert (out / "code").is_file()
    assert "train:" in result.stdout and "test: 2 pairs" in result.stdout


def test_wmt14_icml17_takes_news_commentary_v9(tmp_path):
    fx = make_wmt_fixtures(tmp_path / "raw", news_commentary="news-commentary-v9.de-en")
    run("prepare_wmt17_en_de.py", *wmt_args(fx, tmp_path / "wmt14"), "--icml17")
    assert len(lines(tmp_path / "wmt14" / "tmp" / "train.tags.en-de.tok.en")) == 150
    # Without --icml17 the v12 corpus is looked for, and this archive lacks it.
    result = run("prepare_wmt17_en_de.py", *wmt_args(fx, tmp_path / "wmt17"), ok=False)
    assert_one_line_error(result, "prepare_wmt17_en_de", "lacks news-commentary-v12.de-en.de")


def test_wmt17_errors(tmp_path):
    fx = make_wmt_fixtures(tmp_path / "raw")
    with open(f"{fx['commoncrawl']}.de", "a", encoding="utf-8") as f:
        f.write("Eine Zeile zu viel.\n")
    result = run("prepare_wmt17_en_de.py", *wmt_args(fx, tmp_path / "out"), ok=False)
    assert_one_line_error(result, "prepare_wmt17_en_de", "line counts differ", "commoncrawl.de-en.en has 40 lines")
    args = wmt_args(fx, tmp_path / "out")
    args[args.index("--europarl") + 1] = tmp_path / "nowhere" / "europarl-v7.de-en"
    result = run("prepare_wmt17_en_de.py", *args, ok=False)
    assert_one_line_error(result, "prepare_wmt17_en_de", "missing input file", "europarl-v7.de-en.en")


def test_wmt17_sentencepiece(tmp_path):
    fx = make_wmt_fixtures(tmp_path / "raw")
    if importlib.util.find_spec("sentencepiece") is None:
        result = run("prepare_wmt17_en_de.py", *wmt_args(fx, tmp_path / "out"), "--sentencepiece", ok=False)
        assert_one_line_error(result, "prepare_wmt17_en_de", "pip install sentencepiece")
        return
    out = tmp_path / "out"
    run("prepare_wmt17_en_de.py", *wmt_args(fx, out), "--sentencepiece")
    assert (out / "spm.model").is_file()
    assert any("\u2581" in line for line in lines(out / "train.en"))


# ------------------------------------------------------------------- prepare_parallel.py

def make_parallel(folder, src="de", tgt="en", n=40):
    folder.mkdir(parents=True, exist_ok=True)
    sources = (("train", "IWSLT14.TED.tst2012"), ("valid", "IWSLT14.TED.dev2010"), ("test", "IWSLT14.TEDX.dev2012"))
    for split, name in sources:
        for lang, code in ((src, "de"), (tgt, "en")):
            common.write_lines(str(folder / f"{split}.{lang}"), sample_segments(name, code, n))
    return folder


def test_prepare_parallel(tmp_path):
    raw = make_parallel(tmp_path / "raw", src="de", tgt="en")
    # A pair that clean-corpus-n drops (ratio), in train only.
    with open(raw / "train.de", "a") as f, open(raw / "train.en", "a") as g:
        f.write("Ja.\n")
        g.write("Yes , yes , yes , yes , indeed .\n")
    out = tmp_path / "out"
    result = run("prepare_parallel.py", "--src", "de", "--tgt", "en", "--train-prefix", raw / "train",
                 "--valid-prefix", raw / "valid", "--test-prefix", raw / "test", "--lowercase",
                 "--bpe-tokens", 200, "--output", out, "--workers", 1, "--binarize", tmp_path / "bin")
    assert "valid: 40 pairs" in result.stdout and "test: 40 pairs" in result.stdout
    train = lines(out / "tmp" / "train.en")
    assert "yes , yes , yes , yes , indeed ." not in train and 30 < len(train) < 41
    assert sample_segments("IWSLT14.TEDX.dev2012", "en", 1) == ["Yes , hello ."]
    assert lines(out / "tmp" / "test.en")[0] == "yes , hello ."
    assert all(line == line.lower() for line in lines(out / "tmp" / "train.de"))
    assert any("@@ " in line for line in lines(out / "train.en"))
    assert (tmp_path / "bin" / "train.de-en.de.bin").is_file()


@pytest.mark.parametrize("case, fragments", [
    ("mismatch", ["line counts differ", "train.de has 41 lines", "train.en has 40"]),
    ("empty", ["empty file", "valid.en"]),
    ("language", ["unknown language code 'xx'", "de, el, en"]),
    ("missing", ["missing input file", "nothere.de"]),
])
def test_prepare_parallel_errors(tmp_path, case, fragments):
    raw = make_parallel(tmp_path / "raw")
    train, valid, src = raw / "train", raw / "valid", "de"
    if case == "mismatch":
        with open(raw / "train.de", "a") as f:
            f.write("Noch eine.\n")
    elif case == "empty":
        (raw / "valid.en").write_text("")
    elif case == "language":
        src = "xx"
        (raw / "train.xx").write_text("x\n")
    elif case == "missing":
        valid = raw / "nothere"
    result = run("prepare_parallel.py", "--src", src, "--tgt", "en", "--train-prefix", train, "--valid-prefix",
                 valid, "--output", tmp_path / "out", "--workers", 1, ok=False)
    assert_one_line_error(result, "prepare_parallel", *fragments)


def test_moses_language_list():
    languages = common.moses_languages()
    assert {"de", "en", "fr", "cs", "zh", "fi"} <= set(languages)
    assert "xx" not in languages and "german" not in languages


# ------------------------------------------------------------------- the Moses re-implementations

def test_clean_corpus_rules():
    pairs = [
        ("a  b\tc ", " x y z"),        # kept, whitespace squeezed and stripped
        ("a b c d", "x y"),             # 4/2 > 1.5: dropped
        ("a b c", "x y"),               # 3/2 = 1.5: kept
        ("", "x"),                      # empty side: dropped
        (" ".join("a" * 6), "x y z w v u"),  # 6 words each: kept at max 6
        (" ".join("a" * 7), " ".join("x" * 7)),  # 7 > max: dropped
        ("a|b c", "x y"),               # '|' removed (the corpus is not factored)
        ("w" * 1001, "x"),              # a word over 1000 characters: dropped
    ]
    kept = list(moses.clean_corpus([p[0] for p in pairs], [p[1] for p in pairs], 1.5, 1, 6))
    assert kept == [("a b c", "x y z"), ("a b c", "x y"), ("a a a a a a", "x y z w v u"), ("ab c", "x y")]
    with pytest.raises(common.PrepError, match="differ in length"):
        list(moses.clean_corpus(["a", "b"], ["x"], 1.5, 1, 6))


def test_xml_segments_as_grep_and_sed():
    xml = ['<doc docid="1">', '<seg id="1"> Hello ’quoted’ world. </seg>', "<title>Not a segment</title>",
           '<seg id="x2">kept tag</seg>', '<seg id="3"></seg>']
    assert moses.xml_segments(xml) == ["Hello 'quoted' world.", '<seg id="x2">kept tag', ""]
    assert moses.xml_documents(xml) == [("1", ["Hello 'quoted' world.", '<seg id="x2">kept tag', ""])]


def test_tokenizer_matches_perl_moses():
    steps = moses.LineSteps("en", lowercase=True)
    assert steps(["We live in the U.S.", "I'm in the U.S. now & then.", "  "]) == [
        "we live in the u.s .", "i &apos;m in the u.s. now &amp; then .", "  "]
    assert moses.LineSteps("de")(["Das kostet 70."]) == ["Das kostet 70 ."]
    assert moses.LineSteps("en", aggressive=True)(["well-known"]) == ["well @-@ known"]


def test_normalize_punctuation_and_non_printing():
    steps = moses.LineSteps("de", normalize=True, non_printing=True, tokenize=False)
    # normalize-punctuation.perl sees the line's '\n': a period before a final quote moves after it.
    assert steps(['Er sagte „Hallo."']) == ['Er sagte "Hallo".']
    assert moses.remove_non_printing("a\u200bb\x07c\td") == "a b c d"
    assert moses.perl_lc("ΟΔΟΣ") == "οδοσ"
