"""seeds.py: mean and sample std over seeds; one seed shows no spread."""
import json

from analysis.seeds import format_summary, percent, summarise_seeds


def _metrics(m05, cmap):
    return {"mAP": {"0.1": 0.7, "0.5": m05}, "average_mAP": {"0.1:0.5": (0.7 + m05) / 2},
            "cmAP": cmap}


def test_sample_std_over_seeds():
    s = summarise_seeds([1, 2, 3], [_metrics(0.40, 0.9), _metrics(0.44, 0.9),
                                    _metrics(0.48, 0.93)])
    assert abs(s["metrics"]["mAP@0.5"]["mean"] - 0.44) < 1e-12
    assert abs(s["metrics"]["mAP@0.5"]["std"] - 0.04) < 1e-12        # ddof 1: sqrt(0.0032/2)
    assert s["metrics"]["mAP@0.1"]["std"] < 1e-12                     # equal values: no spread
    assert "mAP@0.5                 44.00 ± 4.00" in format_summary(s)


def test_one_seed_has_no_std_rather_than_zero():
    s = summarise_seeds([7], [_metrics(0.45, 0.9)])
    assert s["metrics"]["mAP@0.5"]["std"] is None
    assert json.loads(json.dumps(s))["metrics"]["cmAP"]["std"] is None   # null in summary.json
    text = format_summary(s)
    assert "45.00 (one seed)" in text and "±" not in text.splitlines()[1]
    assert percent(0.4512, None, 1) == "45.1 (one seed)"
    assert percent(0.4512, 0.0123, 1) == "45.1 ± 1.2"
