"""The embedded default data (readers/synthetic.py) are the same bytes on every machine: no
BLAS product makes them, so neither the BLAS build, its CPU kernel nor the thread count
moves the default table of `python run.py`."""
import hashlib
import os

import numpy as np

from readers import synthetic
from readers.layouts import wtalc_paths
from core.safe_load import load_npy

# sha256 of the default dataset (120 videos up to 150 s, seed 0) as arrays_digest hashes it.
# Measured 2026-12-02 with numpy 2.4.6, and the same with numpy 2.0.2 and 2.2.6, with
# OpenBLAS's SkylakeX, Haswell, Sandybridge and Prescott kernels at 1 and 2 threads, and
# with glibc's AVX/FMA code paths and numpy's AVX2/AVX-512 ones switched off. (The
# matmul-based generator before it gave 6 different digests over those 4 kernels x 2
# thread counts.)
DEFAULT_DIGEST = "d06f72530d5f271f7adc76b1a62a6ef6cefee9d70ec749321ea65c3adeb81c13"


def arrays_digest(folder):
    """sha256 over the video names and, per video, the features' shape, dtype and bytes."""
    feat_path, ann_dir = wtalc_paths(folder, synthetic.BUNDLE)
    h = hashlib.sha256()
    for name in load_npy(os.path.join(ann_dir, "videoname.npy")):
        h.update(bytes(name) + b"\n")
    for x in load_npy(feat_path):
        x = np.ascontiguousarray(x)
        h.update(f"{x.shape} {x.dtype.str}\n".encode() + x.tobytes())
    return h.hexdigest()


def test_the_default_data_have_the_same_bytes_on_every_machine(tmp_path):
    out = str(tmp_path / "synthetic")
    synthetic.generate(out, 120, 150.0, seed=0, log=lambda *a: None)
    feats = load_npy(wtalc_paths(out, synthetic.BUNDLE)[0])
    assert len(feats) == 120 and sum(len(x) for x in feats) == 15407
    assert {x.dtype for x in feats} == {np.dtype(np.float32)}
    assert arrays_digest(out) == DEFAULT_DIGEST


def test_weighted_sum_rounds_each_step_in_float32_in_order():
    """Against a scalar loop: acc = float32(acc + float32(w * p)), pattern after pattern."""
    rng = np.random.default_rng(5)
    weights = rng.random((3, 4)).astype(np.float32)
    weights[:, 2] = 0                                            # a pattern skipped
    patterns = rng.uniform(0.5, 1.5, (4, 6)).astype(np.float32)
    got = synthetic.weighted_sum(weights, patterns)
    assert got.dtype == np.float32
    for t in range(3):
        for d in range(6):
            acc = np.float32(0)
            for n in range(4):
                acc = np.float32(acc + np.float32(weights[t, n] * patterns[n, d]))
            assert got[t, d] == acc                                       # bit for bit
    np.testing.assert_allclose(got, weights.astype(float) @ patterns.astype(float), rtol=1e-6)
