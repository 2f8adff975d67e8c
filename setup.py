from setuptools import find_packages, setup

setup(
    name="fairseq_partitioned",
    version="0.1.0",
    description="ATS (alternating training) and GaP (grow-and-prune) for fairseq",
    packages=find_packages(include=["fairseq_partitioned", "fairseq_partitioned.*"]),
    python_requires=">=3.9",
    entry_points={
        "console_scripts": [
            "fairseq-partitioned-export = fairseq_partitioned.cli.export:cli_main",
            "fairseq-partitioned-prune = fairseq_partitioned.cli.prune:cli_main",
            "fairseq-partitioned-report = fairseq_partitioned.cli.report:cli_main",
            "fairseq-partitioned-pgap = fairseq_partitioned.cli.pgap:cli_main",
        ],
    },
)
