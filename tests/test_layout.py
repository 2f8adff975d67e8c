"""docs/design.md's layout is the package's table of contents: it names every module there is."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "fairseq_partitioned")


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
