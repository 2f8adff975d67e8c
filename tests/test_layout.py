"""The layout is the table of contents: docs/design.md's names every module of the package; scripts/ shows
its commands (and scripts/README.md says which is for whom), its machinery is one package, scripts/harness/,
imported one way: commands import the harness, never each other; the shared modules import no family; a
family imports the shared modules, itself and the families it builds on; no cycle."""
import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "fairseq_partitioned")
SCRIPTS = os.path.join(ROOT, "scripts")
HARNESS = os.path.join(SCRIPTS, "harness")
# The families of harness/ and the other families each builds on (every one may import the shared modules).
FAMILIES = {"papers": set(), "study": set(), "ladder": {"study"}, "bench": {"papers"}}


def test_the_design_layout_names_every_module_of_the_package():
    with open(os.path.join(ROOT, "docs", "design.md"), encoding="utf-8") as f:
        layout = re.search(r"```\nfairseq_partitioned/\n(.*?)\nscripts/", f.read(), re.S).group(1)
    folders = {line.split()[0].rstrip("/"): line for line in layout.splitlines() if re.match(r"  \w+/ ", line)}
    modules = []
    for folder, _, files in os.walk(PACKAGE):
        modules += [os.path.relpath(os.path.join(folder, f), PACKAGE) for f in files
                    if f.endswith(".py") and (f != "__init__.py" or folder == PACKAGE)]
    missing = [m for m in sorted(modules) if os.path.basename(m) not in layout
               or (os.sep in m and m.split(os.sep)[0] not in folders)]
    assert not missing, f"docs/design.md's layout does not name {missing}"


def _tree(path: str) -> ast.Module:
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read())


def _commands() -> dict:
    """scripts/NAME.py -> its syntax tree."""
    return {f[:-3]: _tree(os.path.join(SCRIPTS, f)) for f in sorted(os.listdir(SCRIPTS)) if f.endswith(".py")}


def _harness() -> dict:
    """harness module (``harness.papers.tables``; a package by its own name) -> its syntax tree."""
    out = {}
    for folder, _, files in os.walk(HARNESS):
        for f in files:
            if f.endswith(".py"):
                parts = os.path.relpath(os.path.join(folder, f), SCRIPTS)[:-3].split(os.sep)
                out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = _tree(os.path.join(folder, f))
    return out


def _imported(tree: ast.Module, known) -> set:
    """The names in ``known`` that a module imports, anywhere in it (``from harness import runs`` imports
    harness.runs)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names & set(known)


def _family(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in FAMILIES else "shared"


def test_scripts_shows_its_commands_and_says_what_each_is_for():
    commands = _commands()
    runnable = {name for name, tree in commands.items()
                if any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body)}
    assert runnable == set(commands), f"not commands: {sorted(set(commands) - runnable)} (move them into harness/)"
    assert all(ast.get_docstring(tree) for tree in commands.values())
    with open(os.path.join(SCRIPTS, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert [name for name in commands if f"`{name}.py`" not in readme] == []
    others = {f for f in os.listdir(SCRIPTS) if not f.endswith(".py") and f != "__pycache__"}
    assert others == {"README.md", "harness", "paper-tables"}


def test_commands_import_the_harness_never_each_other():
    commands, harness = _commands(), _harness()
    for name, tree in commands.items():
        assert _imported(tree, commands) == set(), f"{name}.py imports a command"
    for name, tree in harness.items():
        assert _imported(tree, commands) == set(), f"{name} imports a command"
        # every import of the harness by its package path: no bare module name of the old flat scripts/
        bare = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names} | {node.module.split(".")[0] for node in ast.walk(tree)
                                            if isinstance(node, ast.ImportFrom) and node.module and not node.level}
        assert not bare & ({m.split(".")[-1] for m in harness} - {"harness"}), f"{name} imports a module by a bare name"


def test_shared_modules_import_no_family_and_a_family_only_what_it_builds_on():
    harness = _harness()
    wrong = []
    for name, tree in harness.items():
        mine = _family(name)
        allowed = {"shared"} if mine == "shared" else {"shared", mine, *FAMILIES[mine]}
        wrong += [f"{name} -> {used}" for used in _imported(tree, harness) if _family(used) not in allowed]
    assert wrong == []


def test_no_import_cycle_in_the_harness():
    harness = _harness()
    imports = {name: _imported(tree, harness) - {name} for name, tree in harness.items()}
    done = set()
    while len(done) < len(imports):  # peel off the modules whose imports are all peeled: a cycle stops it
        ready = {name for name in imports if name not in done and imports[name] <= done}
        assert ready, f"import cycle among {sorted(set(imports) - done)}"
        done |= ready
