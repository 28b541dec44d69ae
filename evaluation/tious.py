"""The benchmarks' tIoU thresholds and averaged ranges, and the one rule that names the
averages of any tIoU list (run.py, detect.py and evaluate.py all use it)."""

# Each benchmark's thresholds and its averaged ranges {name: (lowest, highest)}: the one
# definition (opts.py's dataset presets and evaluate.py's defaults).
THUMOS_TIOUS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
THUMOS_AVERAGES = {"0.1:0.5": (0.1, 0.5), "0.1:0.7": (0.1, 0.7), "0.1:0.9": (0.1, 0.9)}
ANET_TIOUS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
ANET_AVERAGES = {"0.5:0.95": (0.5, 0.95)}

TOLERANCE = 1e-9


def _among(t, tious):
    return any(abs(t - u) <= TOLERANCE for u in tious)


def spanned(lo, hi, tious):
    """The thresholds of `tious` in [lo, hi]."""
    return [t for t in tious if lo - TOLERANCE <= t <= hi + TOLERANCE]


def tiou_averages(tious, benchmark_tious, benchmark_averages):
    """The averages reported for the thresholds `tious` ({name: (lowest, highest)}).

    A benchmark's named average is reported only when every benchmark threshold it spans
    was evaluated (so '0.1:0.5' always means the mean over 0.1, 0.2, 0.3, 0.4 and 0.5).
    When none is, one average over the whole given list, named by its ends; should that
    name be a benchmark average's whose thresholds were not all evaluated, the name says
    how many it covers ('0.1:0.5 (3 tIoUs)').

    The benchmark's own list gives all its averages: the default outputs are unchanged."""
    chosen = {name: (lo, hi) for name, (lo, hi) in benchmark_averages.items()
              if all(_among(t, tious) for t in spanned(lo, hi, benchmark_tious))
              and _among(lo, tious) and _among(hi, tious)}
    if chosen:
        return chosen
    lo, hi = min(tious), max(tious)
    name = f"{lo:g}:{hi:g}"
    if name in benchmark_averages:
        name += f" ({len(tious)} tIoU{'s' if len(tious) > 1 else ''})"
    return {name: (lo, hi)}
