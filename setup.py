import os
import re

from setuptools import find_packages, setup

# the one place the version is written: fairseq_partitioned/version.py (read, not imported: no torch here)
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fairseq_partitioned", "version.py")) as f:
    VERSION = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)

setup(
    name="fairseq_partitioned",
    version=VERSION,
    description="ATS (alternating training) and GaP (grow-and-prune) for fairseq",
    packages=find_packages(include=["fairseq_partitioned", "fairseq_partitioned.*"]),
    python_requires=">=3.9",
    # CTranslate2 for `fairseq-partitioned-export --ctranslate2` (docs/deploy.md); it needs no torch of its own
    extras_require={"deploy": ["ctranslate2>=4.8,<4.9"]},
    entry_points={
        "console_scripts": [
            "fairseq-partitioned-export = fairseq_partitioned.cli.export:cli_main",
            "fairseq-partitioned-prune = fairseq_partitioned.cli.prune:cli_main",
            "fairseq-partitioned-report = fairseq_partitioned.cli.report:cli_main",
            "fairseq-partitioned-pgap = fairseq_partitioned.cli.pgap:cli_main",
        ],
    },
)
