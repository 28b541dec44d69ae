"""Readers of the three folder layouts; each returns (classes, entries, source, ambiguous),
entries being features.Entry (the features still unread). `detect_layout` tells the layouts
apart by their files; an HDF5 file is read by hdf5_format.py.

wtalc    the W-TALC bundle (THUMOS14 and ActivityNet1.2):
         DATA_ROOT/<bundle>-I3D-JOINTFeatures.npy      object array, one (T_i, 2048) array per
                                                       video (RGB 1024 then flow 1024)
                   <bundle>-UNT-JOINTFeatures.npy      the same of UntrimmedNet (W-TALC's other
                                                       feature_type); --features picks one when
                                                       both are there (wtalc_features_file)
         DATA_ROOT/<bundle>-Annotations/videoname.npy  (N,)  bytes or str
                                        subset.npy     (N,)  e.g. 'validation' (train) / 'test'
                                        classlist.npy  (K,)
                                        segments.npy   (N,)  per video a list of [start, end] s
                                        labels.npy     (N,)  per video one class name per segment
                                        labels_all.npy (N,)  per video its label set
                                        duration.npy   (N,) or (N, 1) seconds
                                        Ambiguous_test.txt (THUMOS14 only)
         The object arrays were pickled by Python 2: core.safe_load.load_npy reads them with a
         restricted unpickler (numpy arrays and plain values only); strings may be bytes.
folders  the BaS-Net / UM / CoLA layout:
         DATA_ROOT/gt.json           {"database": {video: {"subset", "annotations":
                                      [{"segment": [start, end] (numbers or strings), "label"}],
                                      "duration" (optional)}}}
         DATA_ROOT/split_train.txt, split_test.txt    one video name a line
         DATA_ROOT/features/{train,test}/{rgb,flow}/<video>.npy   (T, 1024) each
                   or features/{train,test}/<video>.npy           (T, 2048) RGB then flow
         DATA_ROOT/Ambiguous_test.txt (optional)
         DATA_ROOT/extraction.json (optional: features extracted from videos by extract.py;
                                    a warning when its "comparable" is not "approximate")
         Classes are the sorted labels of gt.json; a video's duration is gt.json's, else
         T * snippet_seconds. Without gt.json (features of one's own videos) a caller that
         allows it (unannotated=True) gets every listed video without labels or segments,
         no class list, and a missing split file as an empty split.
emmil    the released EM-MIL layout: DATA_ROOT/{train,test}/X_RGB/<i>.pt, X_flow/<i>.pt
         (float tensors (T, 1024)), Y_flow/<i>.pt (multi-hot (K,)), Name_flow/<i>.pt (a str),
         i = 0..N-1; segments, durations and classes come from `annotations` (a gt.json or a
         W-TALC *-Annotations folder; default DATA_ROOT/gt.json).
hdf5     our own single self-describing file; DATA_ROOT is the file (hdf5_format.py).
"""
import functools
import os

import numpy as np

from readers import annotation_reader
from readers.features import STREAM_DIM, Entry, join_streams, load_pt, named, numeric_array
from core.safe_load import load_array, load_npy, read_json, read_video_list
from core.errors import InputError, warn
from core.names import check_video_name

# ---------------------------------------------------------------------------
# Ground truth: any annotation source, as class indices
# ---------------------------------------------------------------------------

def read_indexed_annotations(path, log=warn):
    """Ground truth from a gt.json or a W-TALC *-Annotations folder, read by the one
    annotation reader (annotation_reader.py) and turned into class indices.

    Returns (classes, {video: (label indices, [(class_index, s, e)], duration|None)}, ambiguous).
    """
    ann = annotation_reader.read_annotations(path)
    for message in ann.warnings:
        log(message)
    return ann.classes, index_table(ann), ann.ambiguous


def index_table(ann):
    """{video: (sorted label indices, [(class_index, s, e)] as annotated, duration|None)}."""
    index = {c: i for i, c in enumerate(ann.classes)}
    return {v: (sorted(index[c] for c in a.labels), [(index[c], s, e) for c, s, e in a.segments],
                a.duration) for v, a in ann.videos.items()}


def adopt_classes(entries, found, canonical, source):
    """Entries re-indexed from the class list `found` onto `canonical` (by name).

    A label or segment class not in `canonical` is an InputError naming `source`."""
    position = {c: i for i, c in enumerate(canonical)}
    missing = [c for c in found if c not in position]
    if missing:
        raise InputError(f"{source}: classes not in the class list ({len(canonical)} classes): "
                         f"{named([repr(c) for c in missing])}; pass --classes FILE, or "
                         f"--classes annotations for the annotations' own labels")
    to = [position[c] for c in found]
    for e in entries:
        e.labels = sorted(to[c] for c in e.labels)
        e.segments = [(to[c], s, t) for c, s, t in e.segments]
        yield e


# ---------------------------------------------------------------------------
# Layout wtalc
# ---------------------------------------------------------------------------

WTALC_TYPES = {"i3d": "I3D", "unt": "UNT"}       # --features -> W-TALC's feature_type


def wtalc_paths(root, bundle, features="i3d"):
    """(features file, annotations folder) of a W-TALC bundle; features: i3d or unt."""
    return (os.path.join(root, f"{bundle}-{WTALC_TYPES[features]}-JOINTFeatures.npy"),
            os.path.join(root, f"{bundle}-Annotations"))


def wtalc_features(root, bundle, features=None):
    """Which features file of a W-TALC bundle to read, as a --features preset (i3d, unt):
    the one asked for, else the one present (I3D when neither is); both present and none
    asked for is an InputError."""
    if features in WTALC_TYPES:
        return features
    present = [f for f in WTALC_TYPES if os.path.isfile(wtalc_paths(root, bundle, f)[0])]
    if len(present) > 1:
        names = " and ".join(os.path.basename(wtalc_paths(root, bundle, f)[0]) for f in present)
        raise InputError(f"{root}: holds {names}; choose one with --features "
                         f"{' or --features '.join(present)}")
    return present[0] if present else "i3d"


def _pop_features(feats, i, log=None):
    """Video i's joint features; the object array lets go of them, so that only the
    Video keeps them (no second copy, and float16 caching really halves memory)."""
    feat = feats[i]
    if feats.dtype == object:
        feats[i] = None
    return feat


def wtalc_entries(root, bundle, train_subset, test_subset, log=warn, features="i3d"):
    """(classes, entries, source, ambiguous) of a W-TALC bundle; features: which file
    (wtalc_features)."""
    feat_path, ann_dir = wtalc_paths(root, bundle, features)
    if not os.path.isdir(ann_dir):
        others = sorted(f for f in os.listdir(root) if f.endswith("-Annotations")) \
            if os.path.isdir(root) else []
        hint = f"; found {', '.join(others)}: is --dataset right?" if others else ""
        raise InputError(f"{ann_dir}: annotation folder not found (expected the W-TALC layout "
                         f"{bundle}-Annotations/ beside {os.path.basename(feat_path)}{hint})")
    ann = annotation_reader.read_wtalc(ann_dir)
    for message in ann.warnings:
        log(message)
    split_of = {train_subset: "train", test_subset: "test"}
    subsets = {a.subset for a in ann.videos.values()}
    for subset in (train_subset, test_subset):
        if subset not in subsets:
            raise InputError(f"{ann_dir}/subset.npy: no video of the subset {subset!r} "
                             f"(present: {sorted(subsets)})")
    feats = load_npy(feat_path)
    if not isinstance(feats, np.ndarray) or feats.ndim != 1:
        raise InputError(f"{feat_path}: expected a 1-d array of one feature array per video, "
                         f"found {getattr(feats, 'shape', type(feats).__name__)}")
    if len(feats) != len(ann.videos):
        raise InputError(f"{feat_path}: {len(feats)} feature arrays but {len(ann.videos)} "
                         f"videos in {ann_dir}")
    table = index_table(ann)

    def entries():
        for i, name in enumerate(ann.videos):
            split = split_of.get(ann.videos[name].subset)
            if split is None:
                _pop_features(feats, i)             # not used: let it go
                continue
            labels, segments, duration = table[name]
            yield Entry(name, split, feat_path, functools.partial(_pop_features, feats, i),
                        labels, segments, duration)

    return ann.classes, entries(), ann_dir, ann.ambiguous


# ---------------------------------------------------------------------------
# Layout folders (BaS-Net, UM, CoLA)
# ---------------------------------------------------------------------------

def _read_npy_streams(paths):
    """(rgb, flow) of a video from its two .npy files, or from one (T, 2048) file."""
    if len(paths) == 2:
        return load_array(paths[0]), load_array(paths[1])
    joint = load_array(paths[0])
    return joint[:, :STREAM_DIM], joint[:, STREAM_DIM:]


def _read_folder_video(paths, name, log):
    if len(paths) == 2:
        return join_streams(load_array(paths[0]), load_array(paths[1]), paths[0], paths[1],
                            name, log)
    joint = numeric_array(load_array(paths[0]), paths[0], name, "features")
    if joint.ndim != 2 or joint.shape[1] != 2 * STREAM_DIM:
        raise InputError(f"{paths[0]}: video {name}: features have shape {joint.shape}, expected "
                         f"(T, {STREAM_DIM}) in rgb/ and flow/, or (T, {2 * STREAM_DIM}) here")
    return joint


def folder_feature_paths(root, split, name):
    """The feature files of one video: (rgb, flow) or (joint,)."""
    base = os.path.join(root, "features", split)
    if os.path.isdir(os.path.join(base, "rgb")) or os.path.isdir(os.path.join(base, "flow")):
        return (os.path.join(base, "rgb", name + ".npy"), os.path.join(base, "flow", name + ".npy"))
    return (os.path.join(base, name + ".npy"),)


EXTRACTION_RECORD = "extraction.json"


def warn_comparability(root, log=warn):
    """A warning when root/extraction.json (features extract.py wrote) says its features are
    not comparable with the published ones."""
    path = os.path.join(root, EXTRACTION_RECORD)
    if not os.path.isfile(path):
        return
    record = read_json(path, "extraction record")
    if not isinstance(record, dict):
        raise InputError(f"{path}: not an extraction record (a JSON object)")
    comparable, reasons = record.get("comparable"), record.get("reasons") or []
    if comparable != "approximate":
        why = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) else ""
        log(f"{path}: these features are not comparable with the published ones (comparable: "
            f"{comparable}{': ' + why if why else ''}); never mix them with other features "
            f"in one run")


def folders_entries(root, log=warn, unannotated=False):
    """(classes, entries, source, ambiguous) of the BaS-Net folders layout. unannotated:
    a root without gt.json is read as videos without labels or segments (classes None)."""
    gt = os.path.join(root, "gt.json")
    warn_comparability(root, log)
    if os.path.isfile(gt) or not unannotated:
        if not os.path.isfile(gt) and os.path.isfile(os.path.join(root, EXTRACTION_RECORD)):
            raise InputError(f"{gt}: not found: the features extract.py wrote have no "
                             f"annotations; add a gt.json to train or evaluate (docs/data.md), "
                             f"or localise them with detect.py RUN_DIR --data-root {root}")
        classes, table, ambiguous = read_indexed_annotations(gt, log)
    else:
        classes, table, ambiguous = None, None, []
    entries = []
    for split in ("train", "test"):
        list_path = os.path.join(root, f"split_{split}.txt")
        if table is None and not os.path.isfile(list_path):
            continue
        names = read_video_list(list_path)
        if not names:
            raise InputError(f"{list_path}: no video listed")
        if not os.path.isdir(os.path.join(root, "features", split)):
            raise InputError(f"{os.path.join(root, 'features', split)}: folder not found "
                             f"(expected {split}/rgb/<video>.npy and {split}/flow/<video>.npy, "
                             f"or {split}/<video>.npy)")
        for name in names:
            if table is not None and name not in table:
                raise InputError(f"{list_path}: video {name} is not in {gt}")
            paths = folder_feature_paths(root, split, name)
            for p in paths:
                if not os.path.isfile(p):
                    raise InputError(f"{p}: file not found (video {name} of {list_path})")
            labels, segments, duration = table[name] if table is not None else ([], [], None)
            entries.append(Entry(name, split, paths[0],
                                 functools.partial(_read_folder_video, paths, name),
                                 labels, segments, duration,
                                 functools.partial(_read_npy_streams, paths),
                                 paths if len(paths) == 2 else None))
    if table is None and not entries:
        raise InputError(f"{root}: no split_train.txt or split_test.txt listing a video")
    return classes, entries, gt if table is not None else root, ambiguous


# ---------------------------------------------------------------------------
# Layout emmil (the released EM-MIL .pt files)
# ---------------------------------------------------------------------------

EMMIL_DIRS = ("X_RGB", "X_flow", "Y_flow", "Name_flow")


def _read_pt_streams(rgb_path, flow_path):
    return load_pt(rgb_path), load_pt(flow_path)


def _read_pt_video(rgb_path, flow_path, name, log):
    return join_streams(load_pt(rgb_path), load_pt(flow_path), rgb_path, flow_path, name, log)


def list_folder(folder):
    """os.listdir, or InputError naming the folder (permissions, not a folder)."""
    try:
        return os.listdir(folder)
    except OSError as e:
        raise InputError(f"{folder}: cannot list the folder ({e.strerror or e})") from None


def emmil_files(root, split):
    """{dir: [path of video i]} of one split; every dir must hold exactly 0.pt .. N-1.pt,
    N the number of files in X_RGB (a missing or an extra file is an error)."""
    folder = os.path.join(root, split, "X_RGB")
    if not os.path.isdir(folder):
        raise InputError(f"{folder}: folder not found (the emmil layout has "
                         f"{{train,test}}/{{{','.join(EMMIL_DIRS)}}}/<i>.pt)")
    n = len(list_folder(folder))
    if n == 0:
        raise InputError(f"{folder}: no video")
    expected = {f"{i}.pt" for i in range(n)}
    files = {}
    for d in EMMIL_DIRS:
        where = os.path.join(root, split, d)
        found = set(list_folder(where)) if os.path.isdir(where) else set()
        extra = sorted(found - expected, key=lambda f: (len(f), f))
        if extra:
            raise InputError(f"{os.path.join(where, extra[0])}: unexpected file; videos are "
                             f"numbered 0.pt .. {n - 1}.pt in every folder (as in X_RGB)")
        files[d] = [os.path.join(where, f"{i}.pt") for i in range(n)]
        for p in files[d]:
            if not os.path.isfile(p):
                raise InputError(f"{p}: file not found (every video needs "
                                 f"{', '.join(EMMIL_DIRS)})")
    return files


def emmil_name(x, path):
    """The video name a Name_flow file holds (a str; torch's weights_only load refuses bytes)."""
    if not isinstance(x, str):
        raise InputError(f"{path}: expected the video name (a str), found {type(x).__name__}")
    return x


def emmil_label_indices(y, path, name, num_classes):
    """Multi-hot tensor (K,) -> class indices."""
    y = numeric_array(y, path, name, "label vector", kinds="fiub").astype(np.float64)
    if y.ndim == 2 and y.shape[0] == 1:
        y = y[0]
    if y.shape != (num_classes,):
        raise InputError(f"{path}: video {name}: label vector of shape {y.shape}, expected "
                         f"({num_classes},) for the {num_classes} classes of the annotations")
    if not np.isfinite(y).all() or y.min() < 0 or y.max() > 1:
        raise InputError(f"{path}: video {name}: label vector is not multi-hot (values in [0, 1])")
    return np.flatnonzero(y > 0.5).tolist()


def emmil_entries(root, annotations, classes=None, log=warn):
    """(classes, entries, source, ambiguous) of the released EM-MIL layout.

    classes: the class list the Y_flow label vectors index (None: the annotations' own)."""
    if annotations is None:
        annotations = os.path.join(root, "gt.json")
        if not os.path.isfile(annotations):
            raise InputError(f"{root}: the emmil layout needs --annotations (a gt.json or a "
                             f"W-TALC *-Annotations folder)")
    if not os.path.exists(annotations):
        raise InputError(f"{annotations}: annotations not found")
    found, table, ambiguous = read_indexed_annotations(annotations, log)
    if classes is None:
        classes = found
    elif list(found) != list(classes):
        adopted = adopt_classes([Entry(v, "", "", None, list(labels), list(segments))
                                 for v, (labels, segments, _) in table.items()],
                                found, classes, annotations)
        table = {e.name: (e.labels, e.segments, table[e.name][2]) for e in adopted}
    entries = []
    for split in ("train", "test"):
        files = emmil_files(root, split)
        for rgb, flow, y, name_path in zip(*(files[d] for d in EMMIL_DIRS)):
            name = check_video_name(emmil_name(load_pt(name_path), name_path), name_path)
            if name not in table:
                raise InputError(f"{name_path}: video {name} is not in {annotations}")
            labels = emmil_label_indices(load_pt(y), y, name, len(classes))
            _, segments, duration = table[name]
            entries.append(Entry(name, split, rgb,
                                 functools.partial(_read_pt_video, rgb, flow, name),
                                 labels, segments, duration,
                                 functools.partial(_read_pt_streams, rgb, flow), (rgb, flow)))
    return classes, entries, annotations, ambiguous


# ---------------------------------------------------------------------------
# Any layout
# ---------------------------------------------------------------------------

def detect_layout(root):
    """The layout of root by its files; 'wtalc' when nothing else is recognised."""
    if os.path.isfile(root):
        return "hdf5"
    if not os.path.isdir(root):
        return "wtalc"
    names = list_folder(root)
    if any(n.endswith(("-Annotations", "-I3D-JOINTFeatures.npy", "-UNT-JOINTFeatures.npy"))
           for n in names):
        return "wtalc"
    if any(os.path.isdir(os.path.join(root, s, "X_RGB")) for s in ("train", "test")):
        return "emmil"
    if {"gt.json", "split_train.txt", "features"} & set(names):
        return "folders"
    return "wtalc"
