"""What the data-preparation scripts share besides the Moses steps (those are in moses.py): reading
and writing (possibly compressed) corpora, downloads and archives, language codes, a process pool
over lines (tokenizer.perl's -threads), subword-nmt BPE (learn_bpe.py / apply_bpe.py as their
command lines do it), SentencePiece, and fairseq-preprocess.

Errors the user can fix raise PrepError; each script turns it into one line on stderr and exit 1.
Nothing here prints on import.
"""
import bz2
import gzip
import io
import itertools
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request


class PrepError(Exception):
    """A problem with the user's input or environment, reported as one line."""


def log(prog, message):
    """Progress on stderr, like the shell recipes' echo lines (stdout keeps the final summary)."""
    print(f"{prog}: {message}", file=sys.stderr, flush=True)


def run_main(prog, main, argv=None):
    """Run main(argv); a PrepError exits with 'PROG: error: MESSAGE' (argparse's own format)."""
    try:
        main(argv)
    except PrepError as err:
        sys.exit(f"{prog}: error: {err}")
    except OSError as err:  # unwritable output folder, full disk, ...: one line too
        sys.exit(f"{prog}: error: {err}")


# --------------------------------------------------------------------------- files

_OPENERS = {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}


def find_input(path):
    """PATH itself, or PATH.xz / .gz / .bz2 (the shipped sample is xz-compressed)."""
    for candidate in (path, path + ".xz", path + ".gz", path + ".bz2"):
        if os.path.isfile(candidate):
            return candidate
    raise PrepError(f"missing input file: {path}")


def iter_lines(path):
    """The lines of a (possibly compressed) UTF-8 file, without their '\\n'.

    Lines are split on '\\n' only, as perl's <F> and grep do: a text-mode Python file would also
    split on '\\r', '\\x85' and '\\u2028', changing line counts of web-crawled corpora.
    """
    path = find_input(path)
    opener = _OPENERS.get(os.path.splitext(path)[1], open)
    with opener(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                yield raw.decode("utf-8").rstrip("\n")
            except UnicodeDecodeError as err:
                raise PrepError(f"{path}: line {number} is not UTF-8 ({err.reason})") from None


def read_lines(path):
    return list(iter_lines(path))


def count_lines(path):
    path = find_input(path)
    opener = _OPENERS.get(os.path.splitext(path)[1], open)
    with opener(path, "rb") as f:
        return sum(1 for _ in f)


def write_lines(path, lines):
    """Write lines with '\\n' endings; returns how many were written."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
            n += 1
    return n


def check_parallel(src_count, tgt_count, src_name, tgt_name):
    """The two sides of a parallel file must be non-empty and have the same number of lines
    (clean-corpus-n.perl would otherwise die with "... is too short!")."""
    for count, name in ((src_count, src_name), (tgt_count, tgt_name)):
        if count == 0:
            raise PrepError(f"empty file: {name}")
    if src_count != tgt_count:
        raise PrepError(f"line counts differ: {src_name} has {src_count} lines, {tgt_name} has {tgt_count}")


def download(url, dest):
    """Fetch url to dest once (kept as a cache); a partial download never takes dest's name."""
    if os.path.isfile(dest):
        return dest
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    part = dest + ".part"
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as f:
            shutil.copyfileobj(response, f, 1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as err:
        if os.path.exists(part):
            os.remove(part)
        raise PrepError(f"could not download {url} ({err}); fetch it yourself and give its local path")
    os.replace(part, dest)
    return dest


def extract_members(archive, basenames, dest_dir):
    """Extract the members whose base names are in basenames (any folder inside the archive) into
    dest_dir, flat. Written through extractfile() so no member can write outside dest_dir.
    Returns {basename: path}; a name missing from the archive is an error."""
    found = {}
    os.makedirs(dest_dir, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                name = os.path.basename(member.name)
                if member.isfile() and name in basenames and name not in found:
                    out = os.path.join(dest_dir, name)
                    with tar.extractfile(member) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    found[name] = out
    except (tarfile.TarError, OSError, EOFError) as err:
        raise PrepError(f"cannot read archive {archive}: {' '.join(str(err).split())}")
    missing = sorted(set(basenames) - set(found))
    if missing:
        raise PrepError(f"archive {archive} lacks {', '.join(missing)}")
    return found


# --------------------------------------------------------------------------- languages

def moses_languages():
    """ISO codes that sacremoses ships non-breaking prefixes for (Moses' own list)."""
    from sacremoses.corpus import NonbreakingPrefixes

    return sorted(set(NonbreakingPrefixes().available_langs.values()))


def check_language(lang, allowed=None):
    allowed = allowed or moses_languages()
    if lang not in allowed:
        raise PrepError(f"unknown language code {lang!r}; expected one of: {', '.join(allowed)}")
    return lang


# --------------------------------------------------------------------------- line processing

def _chunks(lines, size):
    chunk = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def map_lines(fn, lines, workers=1, chunk_size=1000):
    """fn over chunks of lines, in order; with workers > 1 in a process pool (like tokenizer.perl's
    -threads). Batches of chunks keep memory bounded on multi-million-line corpora."""
    if workers <= 1:
        for chunk in _chunks(lines, chunk_size):
            yield from fn(chunk)
        return
    import multiprocessing

    with multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn").Pool(workers) as pool:
        batch = []
        for chunk in _chunks(lines, chunk_size):
            batch.append(chunk)
            if len(batch) == 4 * workers:
                for done in pool.map(fn, batch):
                    yield from done
                batch = []
        for done in pool.map(fn, batch):
            yield from done


def process_file(lines, out_path, steps, workers=1, append=False):
    """Run a moses.LineSteps (or ApplyBpe) over lines into out_path; returns the number of lines."""
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    n = 0
    with open(out_path, "a" if append else "w", encoding="utf-8", newline="\n") as out:
        for line in map_lines(steps, lines, workers):
            out.write(line + "\n")
            n += 1
    return n


# --------------------------------------------------------------------------- splits

def split_file_every(path, n, rest_path, held_out_path):
    """awk '{if (NR%n == 0) print}' > held_out; awk '{if (NR%n != 0) print}' > rest (1-based lines)."""
    with open(rest_path, "w", encoding="utf-8", newline="\n") as rest, \
            open(held_out_path, "w", encoding="utf-8", newline="\n") as held_out:
        for i, line in enumerate(iter_lines(path), 1):
            (held_out if i % n == 0 else rest).write(line + "\n")


def concat_files(paths, out_path):
    return write_lines(out_path, itertools.chain.from_iterable(iter_lines(p) for p in paths))


# --------------------------------------------------------------------------- subwords

def learn_bpe(train_files, codes_path, merges, work_dir):
    """cat train.L1 train.L2 > TRAIN; learn_bpe.py -s MERGES < TRAIN > code."""
    from subword_nmt.learn_bpe import learn_bpe as _learn

    joint = os.path.join(work_dir, "bpe-train.joint")
    with open(joint, "wb") as out:
        for path in train_files:
            with open(path, "rb") as f:
                shutil.copyfileobj(f, out)
    # Opened like the CLI opens stdin: utf-8, universal newlines.
    with open(joint, encoding="utf-8") as fin, open(codes_path, "w", encoding="utf-8") as fout:
        _learn(fin, fout, merges)
    os.remove(joint)
    return codes_path


def _codes_text(codes_path):
    path = find_input(codes_path)
    opener = _OPENERS.get(os.path.splitext(path)[1], open)
    with opener(path, "rt", encoding="utf-8") as f:
        return f.read()


class ApplyBpe:
    """apply_bpe.py -c CODES, one line at a time (picklable for map_lines)."""

    _cache = {}

    def __init__(self, codes_path):
        self.codes_path = codes_path

    def __call__(self, chunk):
        stat = os.stat(find_input(self.codes_path))
        key = (self.codes_path, stat.st_mtime_ns, stat.st_size)
        bpe = ApplyBpe._cache.get(key)
        if bpe is None:
            from subword_nmt.apply_bpe import BPE

            bpe = BPE(io.StringIO(_codes_text(self.codes_path)))
            ApplyBpe._cache[key] = bpe
        # process_line keeps the line's own leading/trailing whitespace, as the CLI does.
        return [bpe.process_line(line + "\n").rstrip("\n") for line in chunk]


def check_bpe_codes(codes_path):
    """Fail early, with one line, on a codes file that is missing or not subword-nmt codes."""
    text = _codes_text(codes_path)
    body = [line for line in text.split("\n") if line and not line.startswith("#version")]
    if not body or len(body[0].split(" ")) != 2:
        raise PrepError(f"{codes_path} does not look like subword-nmt BPE codes")
    return codes_path


def install_bpe_codes(codes_path, dest):
    """Copy given codes (possibly compressed) to dest, as plain text: the output folder then holds
    the codes it was made with, like the recipes' $prep/code."""
    check_bpe_codes(codes_path)
    with open(dest, "w", encoding="utf-8", newline="\n") as out:
        out.write(_codes_text(codes_path))
    return dest


def bpe_splits(tmp_dir, out_dir, langs, splits, codes=None, merges=10000, workers=1, out_prefix="",
               code_dir=None):
    """learn_bpe.py -s MERGES on tmp/train.L1 + tmp/train.L2 into CODE_DIR/code (or copy the given
    codes there; CODE_DIR defaults to OUT), then apply_bpe.py -c code < tmp/SPLIT.L > OUT/OUT_PREFIXSPLIT.L
    for every split."""
    code = os.path.join(code_dir or out_dir, "code")
    if codes:
        install_bpe_codes(codes, code)
    else:
        learn_bpe([os.path.join(tmp_dir, f"train.{lang}") for lang in langs], code, merges, tmp_dir)
    apply = ApplyBpe(code)
    for lang in langs:
        for split in splits:
            process_file(iter_lines(os.path.join(tmp_dir, f"{split}.{lang}")),
                         os.path.join(out_dir, f"{out_prefix}{split}.{lang}"), apply, workers)
    return code


def summary(out_dir, langs, splits=("train", "valid", "test")):
    """'split: N pairs' per split; the two sides must agree."""
    lines = []
    for split in splits:
        counts = [count_lines(os.path.join(out_dir, f"{split}.{lang}")) for lang in langs]
        if counts[0] != counts[1]:
            raise PrepError(f"internal error: {split} sides have {counts[0]} and {counts[1]} lines")
        lines.append(f"{split}: {counts[0]} pairs")
    return lines


def finish(prog, args, langs, splits=("train", "valid", "test")):
    """The common end of every prepare script: fairseq-preprocess if asked, then the pair counts."""
    if args.binarize:
        log(prog, f"fairseq-preprocess into {args.binarize}...")
        binarize(langs[0], langs[1], args.output, args.binarize, workers=args.workers, joined=args.joined_dictionary)
    print("\n".join(summary(args.output, langs, splits)))


def sentencepiece_module():
    try:
        import sentencepiece
    except ImportError:
        raise PrepError("--sentencepiece needs the sentencepiece package: pip install sentencepiece") from None
    return sentencepiece


def learn_sentencepiece(train_files, model_prefix, vocab_size, workers=1):
    """A BPE-type SentencePiece model on the tokenized training text of both languages."""
    spm = sentencepiece_module()
    try:
        spm.SentencePieceTrainer.train(
            input=",".join(train_files), model_prefix=model_prefix, vocab_size=vocab_size,
            model_type="bpe", character_coverage=1.0, input_sentence_size=10_000_000,
            shuffle_input_sentence=True, num_threads=max(1, workers), minloglevel=2,
        )
    except RuntimeError as err:
        raise PrepError(f"sentencepiece training failed: {str(err).strip().splitlines()[-1]}")
    return model_prefix + ".model"


class ApplySentencepiece:
    """spm_encode --output_format=piece, one line at a time (picklable for map_lines)."""

    _cache = {}

    def __init__(self, model_path):
        self.model_path = model_path

    def __call__(self, chunk):
        sp = ApplySentencepiece._cache.get(self.model_path)
        if sp is None:
            sp = sentencepiece_module().SentencePieceProcessor(model_file=self.model_path)
            ApplySentencepiece._cache[self.model_path] = sp
        return [" ".join(sp.encode(line, out_type=str)) for line in chunk]


# --------------------------------------------------------------------------- fairseq

def binarize(src, tgt, text_dir, dest, splits=("train", "valid", "test"), workers=1, joined=False,
             extra=()):
    """fairseq-preprocess --source-lang SRC --target-lang TGT --{train,valid,test}pref ... --destdir."""
    cmd = [sys.executable, "-m", "fairseq_cli.preprocess", "--source-lang", src, "--target-lang", tgt,
           "--destdir", dest, "--workers", str(workers)]
    for split in splits:
        if os.path.isfile(os.path.join(text_dir, f"{split}.{src}")):
            cmd += [f"--{split}pref", os.path.join(text_dir, split)]
    if joined:
        cmd.append("--joined-dictionary")
    cmd += list(extra)
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        tail = result.stdout.strip().splitlines()[-1:] or ["(no output)"]
        raise PrepError(f"fairseq-preprocess failed (exit {result.returncode}): {tail[0]}")
    return dest
