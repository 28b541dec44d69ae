"""The tables of a sweep (sweep.py): results.csv (one row per trial), summary.csv and the
printed table (per grid point, mean ± sample std over the seeds, ranked by the mAP on
held-out training videos); and the removal of what a sweep wrote (--overwrite)."""
import math
import os

import pandas as pd

from pipeline.run_folder import clear_earlier_run
from analysis.seeds import flatten_metrics, summarise_points
from core.files import atomic_write_text
from sweeps.sweep_grid import point_label

FRONT = ["trial", "seed", "status"]
BACK = ["seconds", "host", "node", "attempts", "resumed", "error"]
KEPT = ("seconds", "host", "node", "attempts", "resumed")   # of a trial finished before
RESULTS, SUMMARY, SUMMARY_TXT = "results.csv", "summary.csv", "summary.txt"


def cell(value):
    """A swept value in a table: the value itself, or its label for a list ('0.05+0.1')."""
    return value.label if isinstance(value.typed, list) else value.typed


def results_frame(axes, rows, earlier=None):
    """rows [(point, seed, trials.result dict)] -> one row per trial: its name, every swept
    option, the seed, status (ok/failed), every metric (metrics.json flattened, val_mAP
    included), wall seconds, host, Ray node id, attempts, resumed, the error. A trial
    finished by an earlier command keeps that command's seconds, host, node and attempts
    (`earlier`: its results.csv) and is 'ok'."""
    old = {}
    if earlier is not None and "trial" in earlier:
        old = earlier.drop_duplicates("trial").set_index("trial").to_dict("index")
    out, metrics = [], []
    for point, seed, r in rows:
        row = {"trial": r["name"], **{a.dest: cell(v) for a, v in zip(axes, point)},
               "seed": seed, "status": "ok" if r["status"] == "skipped" else r["status"]}
        flat = flatten_metrics(r["metrics"]) if r["metrics"] else {}
        metrics += [k for k in flat if k not in metrics]
        row.update(flat)
        row.update({k: r.get(k) for k in KEPT})
        if r["status"] == "skipped" and r["name"] in old:
            row.update({k: old[r["name"]][k] for k in KEPT if k in old[r["name"]]})
        row["error"] = r["error"] or ""
        out.append(row)
    columns = FRONT[:1] + [a.dest for a in axes] + FRONT[1:] + metrics + BACK
    return pd.DataFrame(out, columns=columns)


def shown_metrics(averages):
    """The table's columns: [(metric, label)], the held-out mAP first."""
    return ([("val_mAP", "val")] + [(f"average_mAP@{k}", f"avg {k}") for k in averages]
            + [("cmAP", "cmAP")])


def write_tables(folder, axes, rows, averages, val_fraction, n_seeds, earlier=None):
    """The tail of every sweep: results.csv, summary.csv and summary.txt written in
    `folder`, the table printed. rows: [(point, seed, result)]; the results frame."""
    results = results_frame(axes, rows, earlier)
    metrics = [c for c in results.columns if c == "val_mAP" or "mAP@" in c or c == "cmAP"]
    summary = ranked(summarise_points(results, [a.dest for a in axes], metrics))
    text = format_table(summary, axes, shown_metrics(averages), val_fraction, n_seeds)
    atomic_write_text(os.path.join(folder, RESULTS), results.to_csv(index=False))
    atomic_write_text(os.path.join(folder, SUMMARY), summary.to_csv(index=False))
    atomic_write_text(os.path.join(folder, SUMMARY_TXT), text + "\n")
    print(text)
    return results


def ranked(summary):
    """The summary with a first column 'rank': by mean held-out mAP (val_mAP), best first;
    no rank (NaN, --grid order kept) where there is none, e.g. --val-fraction 0."""
    summary = summary.copy()
    val = summary["val_mAP_mean"] if "val_mAP_mean" in summary else None
    if val is None or not val.notna().any():
        summary.insert(0, "rank", float("nan"))
        return summary
    summary = summary.sort_values("val_mAP_mean", ascending=False, kind="stable",
                                  na_position="last").reset_index(drop=True)
    rank = [i + 1 if v == v else float("nan") for i, v in enumerate(summary["val_mAP_mean"])]
    summary.insert(0, "rank", rank)
    return summary


def _pm(mean, std):
    """'61.27 ± 1.23' in percent; the std left out for one seed, '--' for none."""
    if not math.isfinite(mean):
        return "--"
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if math.isfinite(std) else "")


def format_table(summary, axes, shown, val_fraction, n_seeds):
    """The printed table. shown: [(metric, column label)], the held-out one first."""
    is_ranked = summary["rank"].notna().any()
    if is_ranked:
        head = (f"ranked by val: the mean over the tIoUs of the detection mAP on the "
                f"{100 * val_fraction:g} % of each seed's training videos held out (not "
                f"trained on); the other columns are the test split, never used to rank")
    else:
        head = ("not ranked (in --grid order): no held-out training videos (--val-fraction "
                "0), and the test split is never used to rank")
    labels = ["rank", "grid point", "seeds"] + [label for _, label in shown]
    rows = []
    for _, s in summary.iterrows():
        point = [next(v for v in a.values if cell(v) == s[a.dest]) for a in axes]
        cells = ["" if s["rank"] != s["rank"] else str(int(s["rank"])),
                 point_label(axes, point), f"{s['seeds']}/{n_seeds}"]
        cells += [_pm(s.get(f"{m}_mean", float("nan")), s.get(f"{m}_std", float("nan")))
                  for m, _ in shown]
        if s["failed"]:
            cells.append(f"{s['failed']} failed: {s['error']}")
        rows.append(cells)
    widths = [max(len(r[i]) for r in [labels] + rows if i < len(r)) for i in range(len(labels))]
    lines = [head, "mAP (%), mean ± sample std over the seeds of each grid point"]
    for r in [labels] + rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                     + ("  " + r[-1] if len(r) > len(labels) else ""))
    return "\n".join(lines)


def clear_sweep(folder, trials, names, trial_files=()):
    """Remove what a sweep wrote into `folder`: its files `names`, temporary files, and
    under `trials`/ each run's files (run_folder.clear_earlier_run), the `trial_files` the
    sweep adds to them and the .pid files;
    folders left empty go too. Never follows a link (one of those names is removed itself)."""
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if (name in names or name.startswith(".tmp-")) and \
                (os.path.islink(path) or os.path.isfile(path)):
            os.remove(path)
    top = os.path.join(folder, trials)
    if os.path.islink(top) or not os.path.isdir(top):
        return
    for name in os.listdir(top):
        path = os.path.join(top, name)
        if os.path.islink(path) or not os.path.isdir(path):
            if name.endswith(".pid") or name.startswith(".tmp-"):
                os.remove(path)
        else:
            for own in trial_files:
                if os.path.lexists(os.path.join(path, own)) and \
                        not os.path.isdir(os.path.join(path, own)):
                    os.remove(os.path.join(path, own))
            clear_earlier_run(path)
            if not os.listdir(path):
                os.rmdir(path)
    if not os.listdir(top):
        os.rmdir(top)
