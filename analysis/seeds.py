"""Several seeds of one run: the metrics flattened, their mean and sample std; the same
per grid point of a sweep (sweep.py)."""
import numpy as np
import pandas as pd


def flatten_metrics(m):
    out = {f"mAP@{k}": v for k, v in m["mAP"].items()}
    out.update({f"average_mAP@{k}": v for k, v in m["average_mAP"].items()})
    if m.get("cmAP") is not None:
        out["cmAP"] = m["cmAP"]
    if m.get("val_mAP") is not None:          # held-out training videos (--val-fraction)
        out["val_mAP"] = m["val_mAP"]
    return out


def summarise_seeds(seeds, all_metrics):
    """{"seeds", "metrics": {name: {"mean", "std", "values"}}}; std is the sample std (ddof 1),
    null for one seed (a spread one seed cannot show)."""
    flat = [flatten_metrics(m) for m in all_metrics]
    summary = {"seeds": list(seeds), "metrics": {}}
    for name in flat[0]:
        values = np.array([f[name] for f in flat], dtype=float)
        summary["metrics"][name] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else None,
            "values": values.tolist()}
    return summary


def percent(mean, std, digits=2, width=0):
    """'mean ± std' in %, or 'mean (one seed)' when std is None; the mean `width` wide."""
    if std is None:
        return f"{100 * mean:{width}.{digits}f} (one seed)"
    return f"{100 * mean:{width}.{digits}f} ± {100 * std:.{digits}f}"


def format_summary(summary):
    lines = [f"{'metric':<22} mean ± std (%) over seeds {summary['seeds']}"]
    for name, s in summary["metrics"].items():
        lines.append(f"{name:<22} {percent(s['mean'], s['std'], width=6)}")
    return "\n".join(lines)


def mean_std(values):
    """(mean, sample std) of the finite values; std NaN below two values, both NaN for none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    mean = float(v.mean()) if len(v) else float("nan")
    return mean, float(v.std(ddof=1)) if len(v) > 1 else float("nan")


def summarise_points(rows, keys, metrics):
    """Per grid point (the distinct values of `keys`, in order of appearance) of a results
    table `rows` (one row per trial; column 'status' ok/skipped/failed): the seeds that
    finished, the failures and their first error, and each metric's mean and sample std
    over the finished seeds (columns NAME_mean, NAME_std)."""
    out = []
    groups = rows.groupby(list(keys), sort=False, dropna=False) if keys else [((), rows)]
    for point, g in groups:
        point = point if isinstance(point, tuple) else (point,)
        ok = g[g["status"] != "failed"]
        errors = g.loc[g["status"] == "failed", "error"].tolist()
        row = {**dict(zip(keys, point)), "seeds": len(ok), "failed": len(errors),
               "error": errors[0] if errors else ""}
        for name in metrics:
            row[f"{name}_mean"], row[f"{name}_std"] = mean_std(ok[name] if name in ok else [])
        out.append(row)
    return pd.DataFrame(out)
