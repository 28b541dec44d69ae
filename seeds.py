"""Several seeds of one run: the metrics flattened, their mean and sample std."""
import numpy as np


def flatten_metrics(m):
    out = {f"mAP@{k}": v for k, v in m["mAP"].items()}
    out.update({f"average_mAP@{k}": v for k, v in m["average_mAP"].items()})
    if m.get("cmAP") is not None:
        out["cmAP"] = m["cmAP"]
    return out


def summarise_seeds(seeds, all_metrics):
    """{"seeds", "metrics": {name: {"mean", "std", "values"}}}; std is the sample std (ddof 1)."""
    flat = [flatten_metrics(m) for m in all_metrics]
    summary = {"seeds": list(seeds), "metrics": {}}
    for name in flat[0]:
        values = np.array([f[name] for f in flat], dtype=float)
        summary["metrics"][name] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "values": values.tolist()}
    return summary


def format_summary(summary):
    lines = [f"{'metric':<22} mean ± std (%) over seeds {summary['seeds']}"]
    for name, s in summary["metrics"].items():
        lines.append(f"{name:<22} {100 * s['mean']:6.2f} ± {100 * s['std']:.2f}")
    return "\n".join(lines)
