"""Our detection against the released test(), on the same trained weights, over seeds.

    python scripts/compare_detection.py [--seeds 1 2 3 4 5] [--output-dir DIR] [-- RUN_OPTIONS]

For each seed: one full `run.py` run (training, then `--detection ours`), and on its final
checkpoint (no training again) the detection redone with `--lam 0.5` (the released curve,
our rules) and with `--detection released`. Prints mAP (%) as mean ± sample std over the
seeds, one row per detection, as a Markdown table; writes summary.json. RUN_OPTIONS (after
`--`) go to run.py, e.g. `-- --dry-run` for a smoke test or `-- --dataset thumos14
--data-root DIR`.
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import run  # noqa: E402  (after the path is set)
from pipeline import run_folder  # noqa: E402
from opts import parse_opts  # noqa: E402
from pipeline.saved_opts import save_opts  # noqa: E402
from core.errors import InputError
from core.files import atomic_write_json  # noqa: E402
from analysis.seeds import percent, summarise_seeds  # noqa: E402
from pipeline.data import check_data, load_data  # noqa: E402
from utils import Logger  # noqa: E402

# (row name, options changed from the trained run's; the first row trains)
DETECTIONS = [("ours (default)", {}),
              ("ours, --lam 0.5 (the released curve)", {"lam": 0.5}),
              ("released test() (--detection released)", {"detection": "released"})]


def detect_again(opts, loaded, trained_dir, changes, output_dir):
    """Detection and evaluation redone on the final checkpoint of `trained_dir`."""
    checkpoint = run_folder.load_checkpoint(trained_dir)
    sub = argparse.Namespace(**{**vars(opts), **changes, "output_dir": output_dir})
    metrics = run.run_pipeline(sub, loaded, checkpoint)
    save_opts(sub, os.path.join(output_dir, "opts.json"))    # the options of this detection
    return metrics


def compare(opts, seeds, output_dir):
    """{row name: [metrics of each seed]}, every row on the same weights per seed."""
    loaded = load_data(opts, Logger(quiet=True))          # read and checked once
    check_data(opts, loaded[1])
    results = {name: [] for name, _ in DETECTIONS}
    for seed in seeds:
        seed_dir = os.path.join(output_dir, f"seed_{seed}")
        base = argparse.Namespace(**{**vars(opts), "seed": seed, "seeds": None})
        for k, (name, changes) in enumerate(DETECTIONS):
            out = os.path.join(seed_dir, f"detection_{k}")
            run_folder.check_output_dir(out, False)
            t0 = time.time()
            if k == 0:
                metrics = run.run_pipeline(argparse.Namespace(**{**vars(base), "output_dir": out}),
                                           loaded)
                trained = out
            else:
                metrics = detect_again(base, loaded, trained, changes, out)
            results[name].append(metrics)
            print(f"seed {seed}: {name}: mAP@0.5 {100 * metrics['mAP'].get('0.5', float('nan')):.2f}"
                  f" ({time.time() - t0:.0f} s)", flush=True)
    return results


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
    if len(set(a.seeds)) != len(a.seeds):
        p.error("--seeds: each seed once")
    opts = parse_opts(run_args + ["--quiet", "--no-tensorboard"])
    try:
        results = compare(opts, a.seeds, a.output_dir)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summaries = {name: summarise_seeds(a.seeds, ms) for name, ms in results.items()}
    atomic_write_json(os.path.join(a.output_dir, "summary.json"), summaries)
    print(f"\nmAP (%), {opts.eval_protocol} protocol, mean ± sample std over seeds {a.seeds}:\n")
    print(markdown_table(summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
