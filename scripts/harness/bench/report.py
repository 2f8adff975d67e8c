"""The report of scripts/benchmark.py: its result as text tables, and the project's speed targets."""
from typing import List

from harness.bench.timing import BEAM
from harness.console import format_table

TARGETS = {  # the project's speed targets, checked in the report
    "ats_full_vs_vanilla": 1.10,
    "ats_core_vs_core_standalone": 1.05,
    "adam_step_vs_fairseq_adam": 1.20,
}


def fmt(x, spec, none="-"):
    return none if x is None else format(x, spec)



def check_targets(result) -> List[dict]:
    checks = []
    for name, row in result["train"].items():
        if row["role"] == "ats" and row["level"] == "full" and row["ratio_to_vanilla"] is not None:
            checks.append({"target": "ats_full_vs_vanilla", "row": name, "value": row["ratio_to_vanilla"]})
        if row["role"] == "ats" and row["level"] == "core" and row.get("ratio_to_core_standalone"):
            checks.append({"target": "ats_core_vs_core_standalone", "row": name,
                           "value": row["ratio_to_core_standalone"]})
    for name, opt in result["optimizer"].items():
        for level in ("full", "core"):
            checks.append({"target": "adam_step_vs_fairseq_adam", "row": f"{name}/{level}",
                           "value": opt[f"ratio_{level}"]})
    for c in checks:
        c["limit"] = TARGETS[c["target"]]
        c["met"] = c["value"] <= c["limit"]
    return checks


def report(result) -> str:
    m, s = result["machine"], result["settings"]
    out = [
        f"fairseq_partitioned benchmark, {m['date']}",
        f"machine: {m.get('gpu') or m['cpu']}; {m['cpu_cores']} CPU cores ({m['torch_threads']} torch "
        f"threads); python {m['python']}, torch {m['torch']}, {m['fairseq']}; load average "
        f"{m['load_average_1min_start']:.2f} at start, {m['load_average_1min_end']:.2f} at end",
        f"arch {s['arch']} {s['arch_args']}".rstrip() + f"; --max-tokens {s['max_tokens']}; "
        f"{s['warmup']} warm-up + {s['repeats']} timed updates per row, interleaved; "
        f"{s['train_batches']} batches, {s['mean_tokens']:.0f} target tokens on average; data {s['data']}",
        "",
    ]
    mfu = any(r.get("mfu") is not None for r in result["train"].values())
    header = ["training update", "median s", "cpu s", "tok/s", "x vanilla", "(cpu)", "x core alone",
              "(cpu)", "params", "peak MB"]
    header += ["MFU"] if mfu else []
    rows = []
    for name, r in result["train"].items():
        mem = result["memory"].get(name, {}).get("peak_mb")
        row = [name, fmt(r["median_s"], ".4f"), fmt(r["median_cpu_s"], ".4f"),
               fmt(r["tokens_per_s"], ".0f"),
               fmt(r["ratio_to_vanilla"], ".3f"), fmt(r["ratio_to_vanilla_cpu"], ".3f"),
               fmt(r.get("ratio_to_core_standalone"), ".3f"),
               fmt(r.get("ratio_to_core_standalone_cpu"), ".3f"),
               f"{r['params'] / 1e6:.2f}M", fmt(mem, ".0f")]
        rows.append(row + ([fmt(r.get("mfu"), ".1%")] if mfu else []))
    if rows:
        out += [format_table(header, rows), ""]
    distilled = [[name, fmt(r["median_s"], ".4f")] + [fmt(r.get(key), ".3f") for key in (
                     "ratio_to_ats", "ratio_to_ats_cpu", "ratio_to_full", "ratio_to_full_cpu")]
                 for name, r in result["train"].items() if r["role"] == "distill" and r["level"] != "full"]
    if distilled:
        out += [format_table(["with --core-distill", "median s", "x ATS, same update", "(cpu)",
                              "x its full update", "(cpu)"], distilled), ""]
    if result["generate"]:
        rows = [[name, fmt(r["median_s"], ".4f"), fmt(r["tokens_per_s"], ".0f"),
                 fmt(r["ratio_to_vanilla"], ".3f"), f"{r['params'] / 1e6:.2f}M"]
                for name, r in result["generate"].items()]
        length = next(iter(result["generate"].values()))["output_length"]
        header = [f"generate (beam {BEAM}, {length} tokens)", "median s/batch", "tok/s", "x vanilla", "params"]
        out += [format_table(header, rows),
                f"({s['gen_repeats']} timed batches of {s['gen_batch_size']} sentences per row, after "
                f"{max(1, s['warmup'])} warm-up)", ""]
    if result["optimizer"]:
        rows = []
        for name, o in result["optimizer"].items():
            for level in ("full", "core"):
                rows.append([f"{name}/{level}", fmt(o[f"median_s_{level}"] * 1e3, ".2f"),
                             fmt(o[f"median_s_fairseq_adam_{level}"] * 1e3, ".2f"),
                             fmt(o[f"ratio_{level}"], ".3f")])
        out += [format_table(["optimizer.step()", "partitioned ms", "fairseq adam ms", "ratio"], rows), ""]
    notes = result["notes"]
    if result["train"]:
        out += [f"x vanilla / x core alone: {notes['ratio']}; (cpu): the same on CPU time",
                f"cpu s: {notes['cpu_s']}"]
    if result["memory"]:
        out.append(f"peak MB: {notes['memory']}")
    if mfu:
        out.append(f"MFU: {notes['mfu']}")
    if result["targets"]:
        out += ["", "targets:"]
        for c in result["targets"]:
            out.append(f"  {'met   ' if c['met'] else 'MISSED'} {c['target']} <= {c['limit']:.2f}: "
                       f"{c['row']} {c['value']:.3f}")
    return "\n".join(out)
