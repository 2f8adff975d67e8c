"""The papers' tables as shell scripts (scripts/paper-tables/TABLE.sh, written by scripts/make_table_scripts.py).

A table's script runs, for every seed, every run of the table with the commands reproduce.py runs
(pipeline.steps), its data folder, output folder, seeds, GPU and Python as variables at its top. Steps that
differ only in a number that grows with them (C-GaP's steps, the fine-tune branched from every round) are
one loop: ``for STEP in $(seq 1 30)``. Each command writes its log where reproduce.py's does (OUT/RUN/seedN/),
a training appending to its log (a rerun resumes it from its checkpoint_last.pt). Importing this module
needs neither fairseq nor torch.
"""
import os
import re
import shlex
import textwrap
from typing import List, Optional, Sequence

from harness.papers import tables
from harness.papers.pipeline import SMOKE_DATA, select, smoke_data_command, steps
from harness.recipe import PLUGIN, ROOT
from harness.runner import Job
from harness.runs import run_dir

# What a command line of the pipeline holds, built with these in place of the values, and what stands there.
DATA, OUT, SEED = "@DATA@", "@OUT@", "@SEED@"
VARIABLES = ((DATA, "$DATA"), (OUT, "$OUT"), (SEED, "$SEED"), (PLUGIN, "$PLUGIN"), (ROOT, "$REPO"))
PROGRAM = {"select-best": '"$PYTHON" "$REPO/scripts/select_best.py"'}  # not an installed command
LOOP = {"train-step": "STEP", "finetune-round": "ROUND"}  # steps by number: the loop's variable
DEFAULT_DATA = {"iwslt14": "data-bin/iwslt14.tokenized.de-en", "wmt17": "data-bin/wmt17_en_de",
                "wmt14": "data-bin/wmt14_en_de"}


def word(arg: str, run: Optional[str] = None) -> str:
    """One argument as the shell reads it: a placeholder (or the run's folder, ``$RUN``) as its variable."""
    text = arg.replace(run, "@RUN@") if run else arg
    if not any(key in text for key, _ in VARIABLES) and "@RUN@" not in text:
        return shlex.quote(arg)
    assert not set(text) & set('"`\\'), arg  # nothing a double-quoted word would read differently
    text = text.replace("@RUN@", "$RUN")
    for key, variable in VARIABLES:
        text = text.replace(key, variable)
    return f'"{text}"'


SEP = "\x00"  # between the words of a command line until it is wrapped
WIDTH = 116


def command(step: Job, run: str, append: bool) -> str:
    """The step's command line, its words joined by SEP, its output into its log."""
    words = [PROGRAM.get(step.argv[0], step.argv[0])] + [word(a, run) for a in step.argv[1:]]
    return SEP.join(words + [f"{'>>' if append else '>'} {word(step.log, run)} 2>&1"])


def wrapped(line: str, indent: str) -> List[str]:
    """A command line (words joined by SEP) in lines of at most WIDTH characters where it can, broken before
    a flag (a flag and its values stay on one line)."""
    units = []
    for w in line.split(SEP):
        positional = w.startswith('"$') and '"$' in units[-1] if units else False  # a path after a path
        if units and not w.startswith(("--", ">")) and not positional:
            units[-1] += " " + w
        else:
            units.append(w)
    lines, current = [], indent + units[0]
    for unit in units[1:]:
        if len(current) + len(unit) + 3 > WIDTH:
            lines.append(current + " \\")
            current = indent + "    " + unit
        else:
            current += " " + unit
    return lines + [current]


def _appends(step: Job) -> bool:
    return step.name.startswith(("train", "finetune"))  # as reproduce.py: a resumed training appends


def _numbered(name: str):
    """(stem, number) of a step named by its number (train-step12), else None."""
    found = re.fullmatch(r"(\D+?)(\d+)", name)
    return (found.group(1), int(found.group(2))) if found and found.group(1) in LOOP else None


def _loop(group: List[Job], run: str) -> Optional[List[str]]:
    """Steps 1..N whose command lines differ only in numbers a * k + b of their step k, as one loop."""
    stem, first = _numbered(group[0].name)
    lines = [command(s, run, _appends(s)) for s in group]
    pieces = [re.split(r"(\d+)", line) for line in lines]
    if len({tuple(p[0::2]) for p in pieces}) != 1:
        return None
    k = [_numbered(s.name)[1] for s in group]
    variable, template = LOOP[stem], list(pieces[0])
    for i in range(1, len(template), 2):
        values = [int(p[i]) for p in pieces]
        if len(set(values)) == 1:
            continue
        a = (values[1] - values[0]) // (k[1] - k[0])
        b = values[0] - a * k[0]
        if any(v != a * kk + b for v, kk in zip(values, k)) or any(p[i] != str(int(p[i])) for p in pieces):
            return None
        term = variable if a == 1 else f"{a} * {variable}"
        template[i] = f"${variable}" if b == 0 and a == 1 else f"$(({term} {'+' if b > 0 else '-'} {abs(b)}))" \
            if b else f"$(({term}))"
    return [f"    for {variable} in $(seq {k[0]} {k[-1]}); do", *wrapped("".join(template), " " * 8), "    done"]


def run_block(run, cells, smoke: bool) -> List[str]:
    """The commands of one run for the seed $SEED."""
    fills = "; ".join(f"{t} {row.label}: {col}" for t, row, col, _ in cells) or "a dependency"
    folder = run_dir(OUT, run.id, SEED)
    lines = textwrap.wrap(f"{run.id} ({fills})", WIDTH, initial_indent="    # ", subsequent_indent="    #   ")
    lines += [f'    RUN="$OUT/{run.id}/seed$SEED"', '    mkdir -p "$RUN"']
    todo = steps(run, SEED, DATA, OUT, smoke, networks={cell.network for *_, cell in cells})
    i = 0
    while i < len(todo):
        numbered = _numbered(todo[i].name)
        j = i
        while numbered and j + 1 < len(todo) and (_numbered(todo[j + 1].name) or ("",))[0] == numbered[0]:
            j += 1
        looped = _loop(todo[i:j + 1], folder) if j - i >= 2 else None
        if looped:
            lines += looped
            i = j + 1
        else:
            lines += wrapped(command(todo[i], folder, _appends(todo[i])), " " * 4)
            i += 1
    return lines


def script(name: str, smoke: bool = False, rows: Optional[Sequence[str]] = None) -> str:
    """The shell script of table ``name`` (``smoke``: its --smoke variant; ``rows``: as reproduce.py --rows)."""
    table = tables.TABLES[name]
    selection = select([name], list(rows) if rows else None)
    data = f"$OUT/{SMOKE_DATA}/data-bin" if smoke else DEFAULT_DATA[table.dataset]
    which = f"{name} --smoke" + (f" --rows {','.join(rows)}" if rows else "") if smoke else name
    lines = [
        "#!/usr/bin/env bash",
        f"# {table.title}",
        f"# Every run of the table for every seed, the commands of `python scripts/reproduce.py {which}`; then",
        f"#   python scripts/collect_results.py {name} --runs \"$OUT\" --seeds ...",
        "# Generated by scripts/make_table_scripts.py from scripts/harness/papers/tables.py (the same runs as",
        "# configs/): set the variables below as you like; to change a run, edit tables.py and regenerate.",
        "set -euo pipefail",
        "",
        'OUT=${OUT:-runs}  # one folder per run and seed: OUT/RUN/seedN/',
        f'DATA=${{DATA:-{data}}}  # the binarized data ({tables.DATASETS[table.dataset].description if not smoke else "the bundled IWSLT14 sample"})',
        f'SEEDS=${{SEEDS:-"{"1" if smoke else "1 2 3"}"}}',
        'GPU=${GPU:-0}  # the GPU the commands run on (CUDA_VISIBLE_DEVICES)',
        'PYTHON=${PYTHON:-python3}',
        'REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}  # this checkout',
        'PLUGIN=${PLUGIN:-$REPO/fairseq_partitioned}  # --user-dir',
        'export CUDA_VISIBLE_DEVICES=$GPU',
        "",
    ]
    if smoke:
        prepare = SEP.join(['"$PYTHON"'] + [word(a) for a in smoke_data_command(OUT, DATA)[1:]])
        lines += ['if [ ! -f "$DATA/dict.en.txt" ]; then', *wrapped(prepare, " " * 4), "fi", ""]
    lines.append("for SEED in $SEEDS; do")
    for i, (run, cells) in enumerate(selection):
        lines += ([""] if i else []) + run_block(run, cells, smoke)
    lines += ["done", ""]
    return "\n".join(lines)


def path(output: str, name: str) -> str:
    return os.path.join(output, f"{name}.sh")
