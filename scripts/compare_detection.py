"""Our detection against the released test(), on the same trained weights, over seeds.

    python scripts/compare_detection.py [--seeds 1 2 3 4 5] [--output-dir DIR] [-- RUN_OPTIONS]

`python run.py --seeds ...` trains once per seed (and detects with `--detection ours`) into
DIR/trained/; `python detect.py` then localises again with each seed's final weights (no
training), with `--lam 0.5` (the released curve, our rules) into DIR/lam_0.5/ and with
`--detection released` into DIR/released/. Prints mAP (%) as mean ± sample std over the
seeds, one row per detection, as a Markdown table; writes DIR/summary.json (the three
summaries). RUN_OPTIONS (after `--`) go to run.py, e.g. `-- --dry-run` for a smoke test or
`-- --dataset thumos14 --data-root DIR`.
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import detect  # noqa: E402  (after the path is set)
import run  # noqa: E402
from analysis.seeds import percent  # noqa: E402
from core.cli import cli  # noqa: E402
from core.errors import InputError  # noqa: E402
from core.files import atomic_write_json  # noqa: E402
from core.safe_load import read_json  # noqa: E402
from pipeline.run_files import RunFolder  # noqa: E402

# (row name, its folder under DIR, the detect.py options; the first row is the trained runs')
DETECTIONS = [("ours (default)", "trained", None),
              ("ours, --lam 0.5 (the released curve)", "lam_0.5", ["--lam", "0.5"]),
              ("released test() (--detection released)", "released",
               ["--detection", "released"])]
QUIET = ["--quiet", "--no-report"]


def compare(seeds, output_dir, run_args):
    """{row name: summary.json of its --seeds folder}, every row on the same weights."""
    trained = os.path.join(output_dir, DETECTIONS[0][1])
    summaries = {}
    for name, folder, options in DETECTIONS:
        out = os.path.join(output_dir, folder)
        t0 = time.time()
        if options is None:
            code = run.main([*run_args, "--seeds", *map(str, seeds), "--output-dir", out,
                             *QUIET, "--no-tensorboard"])
        else:
            code = detect.main([trained, "--output-dir", out, *options, *QUIET])
        if code:
            raise InputError(f"{name}: exit code {code}")
        summaries[name] = read_json(RunFolder(out).summary, "a summary of seeds")
        print(f"{name}: {time.time() - t0:.0f} s", flush=True)
    return summaries


def markdown_table(summaries):
    """One row per detection: mAP at each tIoU and the averages, mean ± std in %."""
    first = next(iter(summaries.values()))["metrics"]
    names = [n for n in first if n.startswith(("mAP@", "average_mAP@"))]
    head = [n.replace("average_mAP@", "avg ").replace("mAP@", "") for n in names]
    lines = ["| detection | " + " | ".join(head) + " |", "|---" * (len(names) + 1) + "|"]
    for row, summary in summaries.items():
        cells = [percent(summary["metrics"][n]["mean"], summary["metrics"][n]["std"], 1)
                 for n in names]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    own, run_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--output-dir", default=os.path.join(
        "runs", f"compare-detection-{time.strftime('%Y%m%d-%H%M%S')}"))
    a = p.parse_args(own)
    summaries = compare(a.seeds, a.output_dir, run_args)
    atomic_write_json(RunFolder(a.output_dir).summary, summaries)
    protocol = read_json(RunFolder(os.path.join(a.output_dir, DETECTIONS[0][1])).seed(
        a.seeds[0]).opts)["eval_protocol"]
    print(f"\nmAP (%), {protocol} protocol, mean ± sample std over seeds {a.seeds}:\n")
    print(markdown_table(summaries))
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
