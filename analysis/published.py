"""The EM-MIL paper's published numbers (Luo et al., ECCV 2020, I3D features), in one place:
scripts/compare_paper.py prints them beside a --seeds summary, the report draws them beside a
run's mAP curve, only when the run is on real features of the same benchmark. Torch-free."""
import os

# mAP in %, keyed as summary.json's metrics ("mAP@<tIoU>", "average_mAP@<lo>:<hi>").
PAPER = {
    "thumos14": {"mAP@0.1": 59.1, "mAP@0.2": 52.7, "mAP@0.3": 45.5, "mAP@0.4": 36.8,
                 "mAP@0.5": 30.5, "mAP@0.6": 22.7, "mAP@0.7": 16.4, "average_mAP@0.1:0.7": 37.7},
    "activitynet12": {"mAP@0.5": 37.4, "average_mAP@0.5:0.95": 20.3},
}
LABEL = "EM-MIL, published (Luo et al. 2020, I3D, real features)"


def paper_curve(dataset):
    """[(tIoU, mAP fraction)] of the paper's per-tIoU figures for a dataset preset (empty
    for any other)."""
    row = PAPER.get(dataset, {})
    return sorted((float(k.split("@")[1]), v / 100) for k, v in row.items()
                  if k.startswith("mAP@"))


def on_real_features(dataset, data_root, generate_synthetic, synthetic_root):
    """Whether a run's numbers may stand beside the paper's: a THUMOS14 or ActivityNet1.2
    preset on features that are not the embedded synthetic ones (generated, or read from
    under the folder where they are generated)."""
    if dataset not in PAPER or generate_synthetic or not data_root:
        return False
    root, synthetic = os.path.realpath(data_root), os.path.realpath(synthetic_root)
    return not (root == synthetic or root.startswith(synthetic + os.sep))
