"""Localisation: the trained networks' pass over videos (q, p, the video classifier's
attention and class scores), their segments, and the evaluation against the annotation
source's ground truth."""
import numpy as np
import pandas as pd
import torch

from readers import annotation_reader
from evaluation import eval_inputs
import evaluate
from training.batches import SnippetDataset
from detection import (RELEASED_LAM, PostProcess, attention_scores, detect_batch,
                       localisation_scores, raw_cutoffs, segments_frame)
from em_trainer import progress
from readers.features import stream_pair
from model import compute_dtype


def ground_truth(videos, classes, ambiguous):
    """Evaluation ground truth of videos [(name, [(class_index, start, end)])]."""
    names = {name for name, _ in videos}
    segments = pd.DataFrame([(name, classes[c], s, e) for name, segs in videos for c, s, e in segs],
                            columns=["video", "label", "start", "end"])
    amb = pd.DataFrame([a for a in ambiguous if a[0] in names], columns=["video", "start", "end"])
    return eval_inputs.GroundTruth(segments=segments, videos=[name for name, _ in videos],
                                classes=list(classes), ambiguous=amb,
                                class_ids=eval_inputs.class_ids(classes))


def videos_ground_truth(videos, classes, ambiguous=()):
    """Evaluation ground truth of Video records (their names and segments)."""
    return ground_truth([(v.name, v.segments) for v in videos], classes, ambiguous)


def evaluation_ground_truth(data, test_subset):
    """The ground truth of the test split, read from the annotation source itself by the one
    reader, as `python evaluate.py results.json --gt SOURCE` reads it: every annotated test
    video (those dropped for empty features too: their segments count as misses), segments
    as annotated (not clipped); the class list is the data's. An HDF5 file is its own
    annotation source: its test videos, dropped ones included. (--dry-run too is evaluated
    against every annotated test video, so its mAP is near 0.)"""
    if data.layout != "hdf5":
        ann = annotation_reader.read_annotations(data.source, test_subset)
        return eval_inputs.ground_truth_of(ann, test_subset, data.classes)
    videos = [(v.name, v.segments) for v in data.split("test")]
    videos += [(name, segs) for name, split, segs in data.dropped if split == "test"]
    return ground_truth(videos, data.classes, data.ambiguous)


def test_ground_truth(data, opts):
    """The ground truth a run is evaluated against (evaluation_ground_truth); a --dry-run,
    which reads only a few test videos, against those (the dropped ones included)."""
    gt = evaluation_ground_truth(data, opts.test_subset)
    if opts.dry_run:
        gt = only_videos(gt, [v.name for v in data.split("test")] +
                         [name for name, split, _ in data.dropped if split == "test"])
    return gt


def only_videos(gt, names):
    """The ground truth of some of its videos (names), in its own video order."""
    keep = set(names)
    return eval_inputs.GroundTruth(
        segments=gt.segments[gt.segments["video"].isin(keep)].reset_index(drop=True),
        videos=[v for v in gt.videos if v in keep], classes=gt.classes,
        ambiguous=gt.ambiguous[gt.ambiguous["video"].isin(keep)].reset_index(drop=True),
        class_ids=gt.class_ids)



def _scorers(model, classifier, method, amp):
    """(q, p) scorers of the EM-MIL branches (None, None for the attention-MIL baseline)."""
    classifier.eval()
    if method != "emmil":
        return None, None
    return tuple(model.branch_scorer(kind, compute_dtype(amp)) for kind in ("key", "cls"))


def _network_pass(v, classifier, q_of, p_of, device):
    """One video through the networks (numpy float64): attention a (T,), class
    probabilities c (T, K), video score (K,), and for EM-MIL q (T,) and p (T, K) (else
    None)."""
    xs = stream_pair(v.features).to(device)                           # (2, T, D)
    rgb, flow = xs[0][None], xs[1][None]                               # (1, T, D)
    mask = torch.ones(rgb.shape[:2], dtype=torch.bool, device=device)
    a, c = classifier.attention_and_classes(rgb, flow, mask)          # (1, T), (1, T, K)
    a, c = a[0].double().cpu().numpy(), c[0].double().cpu().numpy()
    out = {"a": a, "c": c, "video_score": (a[:, None] * c).sum(axis=0), "q": None, "p": None}
    if q_of is not None:
        q, p = q_of(xs)[:, 0], p_of(xs)                                # (T,), (T, K)
        out["q"], out["p"] = q.double().cpu().numpy(), p.double().cpu().numpy()
    return out


def curve(out, lam):
    """The localisation score s (T, K) that detection thresholds, from one video's network
    pass: lam q + (1 - lam) p_c for EM-MIL, attention x class probabilities for attention MIL."""
    if out["q"] is not None:
        return localisation_scores(out["q"], out["p"], lam)
    return attention_scores(out["a"], out["c"])


def curve_lam(opts):
    """The lam of the localisation score: --lam, or the released curve's (--detection released)."""
    return RELEASED_LAM if opts.detection == "released" else opts.lam


@torch.no_grad()
def network_outputs(model, classifier, videos, device, *, method="emmil", amp=False,
                    show_progress=False):
    """The networks' pass over `videos`, one video at a time (its features read once):
    [_network_pass dict]. Everything after it (the curves, detection, evaluation) needs no
    network, so a grid of post-processing reuses it."""
    q_of, p_of = _scorers(model, classifier, method, amp)
    return [_network_pass(v, classifier, q_of, p_of, device)
            for v in progress(videos, len(videos), "detection", show_progress)]


def score_videos(model, classifier, videos, device, *, lam, method="emmil", amp=False,
                 show_progress=False):
    """The test pass: per video its localisation scores (T, K) (numpy float64) and the
    video scores (N, K)."""
    outputs = network_outputs(model, classifier, videos, device, method=method, amp=amp,
                              show_progress=show_progress)
    return [curve(o, lam) for o in outputs], np.stack([o["video_score"] for o in outputs])


@torch.no_grad()
def report_curves(model, classifier, videos, classes, snippet_seconds, opts, device):
    """{name: curve record} of some videos for the report's timelines (report.curve_lines):
    the curves the detections of `localise` come from, and each class's threshold in the
    curve's own units (detection.raw_cutoffs)."""
    q_of, p_of = _scorers(model, classifier, opts.method, opts.amp)
    records = {}
    for v in videos:
        out = _network_pass(v, classifier, q_of, p_of, device)
        s = curve(out, curve_lam(opts))
        if out["q"] is not None:
            per_video, per_class = {"q": out["q"]}, {"p_c": out["p"], "s_c": s}
        else:
            per_video = {"attention / max": out["a"] / out["a"].max()}
            per_class = {"class prob.": out["c"], "s_c": s}
        records[v.name] = {"snippet_seconds": snippet_seconds, "video": per_video,
                           "class": per_class, "classes": list(classes),
                           "cutoffs": raw_cutoffs(s, opts.loc_threshold)}
    return records


def detect_from(outputs, videos, classes, opts, snippet_seconds, ambiguous=()):
    """Detections (DataFrame) of `videos` from their network outputs, under opts' detection
    options, and the video scores (N, K). ambiguous: [(video, start, end)], used with
    --drop-ambiguous."""
    index = {v.name: i for i, v in enumerate(videos)}
    spans = {}
    for video, s, e in ambiguous:
        if video in index:
            spans.setdefault(index[video], []).append((s, e))
    video_scores = np.stack([o["video_score"] for o in outputs])
    found = detect_batch([curve(o, curve_lam(opts)) for o in outputs], video_scores,
                         PostProcess.from_opts(opts), snippet_seconds=snippet_seconds,
                         durations=[v.duration for v in videos], ambiguous=spans)
    return segments_frame([v.name for v in videos], found, classes), video_scores


def localise(model, classifier, dataset, classes, opts, device, show_progress=False,
             ambiguous=()):
    """Detections of every video of `dataset` (DataFrame) and the video scores (N, K).
    ambiguous: [(video, start, end)], used with --drop-ambiguous."""
    outputs = network_outputs(model, classifier, dataset.videos, device, method=opts.method,
                              amp=opts.amp, show_progress=show_progress)
    return detect_from(outputs, dataset.videos, classes, opts, dataset.snippet_seconds,
                       ambiguous)


# evaluation --------------------------------------------------------------------

def evaluate_run(detections, video_scores, videos, gt, opts):
    res = evaluate.evaluate_detection(detections, gt, opts.tiou, protocol=opts.eval_protocol)
    labels = torch.stack([v.labels for v in videos]).numpy()
    cmap = evaluate.classification_map(video_scores, labels)
    averages = {k: tuple(v) for k, v in opts.averages.items()}
    return evaluate.build_metrics(opts.eval_protocol, opts.tiou, res["mAP"], averages, cmap)



def held_out_score(detections, val_gt, tiou):
    """The held-out score: the detection mAP (ActivityNet protocol) on the held-out
    training videos, mean over the tIoUs."""
    return float(np.mean(evaluate.evaluate_detection(detections, val_gt, tiou,
                                                     "activitynet")["mAP"]))


def held_out_map(model, classifier, val_videos, val_gt, data, opts, device):
    """--eval-every and the final val_mAP: held_out_score of the held-out videos' detections."""
    val_set = SnippetDataset(val_videos, data.snippet_seconds)
    dets, _ = localise(model, classifier, val_set, data.classes, opts, device)
    return held_out_score(dets, val_gt, opts.tiou)
