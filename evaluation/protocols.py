"""The two official detection protocols, vectorised: the matching of predictions to ground
truth and the AP of each (evaluate.py reads the files and reports; see its docstring).

Both greedy matchings are computed for all classes, videos and thresholds at once (see
``serial_dictatorship``). Importable without torch.
"""
from __future__ import annotations

import numpy as np


# ----------------------------------------------------------------------------- matching

def same_key_pairs(left_key: np.ndarray, right_key: np.ndarray):
    """All pairs (i, j) with left_key[i] == right_key[j], sorted by i then j."""
    order = np.argsort(right_key, kind="stable")
    lo = np.searchsorted(right_key[order], left_key, side="left")
    hi = np.searchsorted(right_key[order], left_key, side="right")
    counts = hi - lo
    first_pair = np.cumsum(counts) - counts            # index of i's first pair
    left = np.repeat(np.arange(len(left_key)), counts)
    right = order[np.repeat(lo - first_pair, counts) + np.arange(counts.sum())]
    return left, right


def serial_dictatorship(proposer: np.ndarray, acceptor: np.ndarray, n_acceptors: int):
    """Greedy matching: proposers in increasing id order each take their most preferred
    acceptor not yet taken.

    ``(proposer[k], acceptor[k])`` are the allowed pairs, sorted by proposer and, within
    a proposer, from most to least preferred.  Returns, per acceptor, the proposer holding
    it or -1.  Every acceptor ranks proposers the same way (lower id first), so the stable
    matching is unique and equals the greedy one; it is computed by deferred acceptance,
    a few vectorised rounds instead of a loop over proposers.
    """
    if len(proposer) == 0:
        return np.full(n_acceptors, -1)
    first = np.flatnonzero(np.r_[True, proposer[1:] != proposer[:-1]])
    last = np.r_[first[1:], len(proposer)]            # group g's pairs: first[g]..last[g]-1
    nxt = first.copy()                                # next pair each group will try
    free_mark = len(first)
    holder = np.full(n_acceptors, free_mark)          # group index holding each acceptor
    free = np.arange(len(first))
    while free.size:
        target = acceptor[nxt[free]]
        before = holder[target]
        np.minimum.at(holder, target, free)           # best (lowest) proposer wins
        after = holder[target]
        displaced = np.unique(before[(before != after) & (before != free_mark)])
        retry = np.concatenate([free[after != free], displaced])
        nxt[retry] += 1
        free = retry[nxt[retry] < last[retry]]
    taken = holder != free_mark
    result = np.full(n_acceptors, -1)
    result[taken] = proposer[first[holder[taken]]]
    return result


def segment_tiou(s1, e1, s2, e2) -> np.ndarray:
    """ActivityNet tIoU: intersection / (len1 + len2 - intersection); 0 if union <= 0."""
    inter = np.clip(np.minimum(e1, e2) - np.maximum(s1, s2), 0, None)
    union = (e1 - s1) + (e2 - s2) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def thumos_overlap(s1, e1, s2, e2) -> np.ndarray:
    """TH14 kit overlap: intersection / (max end - min start) over sorted endpoints;
    0 when the intersection is not positive."""
    a1, b1 = np.minimum(s1, e1), np.maximum(s1, e1)
    a2, b2 = np.minimum(s2, e2), np.maximum(s2, e2)
    inter = np.minimum(b1, b2) - np.maximum(a1, a2)
    span = np.maximum(b1, b2) - np.minimum(a1, a2)
    return np.divide(inter, span, out=np.zeros_like(inter), where=inter > 0)


def _match_all_thresholds(prop, acc, value, tie, tious, strict, n_prop, n_acc):
    """Greedy matching for every threshold at once: threshold t gets its own copy of
    proposers (t * n_prop + p) and acceptors (t * n_acc + a).  Pairs are allowed when
    value >= t (or > t if strict) and preferred by higher value, then lower ``tie``.
    Returns a (T, n_prop) array: the matched acceptor, or -1."""
    useful = value > tious.min() if strict else value >= tious.min()
    prop, acc, value, tie = prop[useful], acc[useful], value[useful], tie[useful]
    order = np.lexsort((tie, -value, prop))       # by proposer, then preference
    prop, acc, value = prop[order], acc[order], value[order]
    allowed = value[None, :] > tious[:, None] if strict else value[None, :] >= tious[:, None]
    t, k = np.nonzero(allowed)                    # row-major: stays sorted by proposer
    holder = serial_dictatorship(t * n_prop + prop[k], t * n_acc + acc[k], len(tious) * n_acc)
    match = np.full(len(tious) * n_prop, -1)
    held = np.flatnonzero(holder >= 0)
    match[holder[held]] = held % n_acc
    return match.reshape(len(tious), n_prop)


# ----------------------------------------------------------------------------- AP

def interpolated_ap(tp: np.ndarray, n_pos: int) -> np.ndarray:
    """ActivityNet all-point interpolated AP of each row of ``tp`` (T, n), ranked."""
    if tp.shape[1] == 0:
        return np.zeros(tp.shape[0])
    hits = np.cumsum(tp, axis=1)
    precision = hits / np.arange(1, tp.shape[1] + 1)
    recall = hits / n_pos
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    return np.sum(np.diff(recall, axis=1, prepend=0.0) * envelope, axis=1)


def thumos_ap(tp: np.ndarray, counted: np.ndarray, n_pos: int) -> np.ndarray:
    """TH14 kit AP of each row: sum of precision at true positives / n_pos, where
    precision counts only ``counted`` detections (ambiguous ones are not)."""
    hits = np.cumsum(tp, axis=1)
    seen = np.cumsum(counted, axis=1)
    precision = np.divide(hits, seen, out=np.zeros(tp.shape), where=tp)
    return precision.sum(axis=1) / n_pos


# ----------------------------------------------------------------------------- each protocol

def _sorted(d: dict, order: np.ndarray) -> dict:
    return {k: v[order] for k, v in d.items()}


def official_rank(cls: np.ndarray, score: np.ndarray, n_classes: int) -> np.ndarray:
    """Prediction order of the official ActivityNet evaluator: class by class, each
    class's predictions in file order ranked by ``np.argsort(score)[::-1]``, numpy's
    default (unstable) sort reversed, so that tied scores fall exactly as there."""
    by_class = np.argsort(cls, kind="stable")                 # (n,) file order per class
    bounds = np.searchsorted(cls[by_class], np.arange(1, n_classes))
    return np.concatenate([idx[np.argsort(score[idx])[::-1]]
                           for idx in np.split(by_class, bounds)])


def official_preference(prop: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Position of each pair in its proposer's preference list, as the official
    ``tiou_arr.argsort()[::-1]``: the pairs of one proposer are contiguous, in ground-truth
    file order; blocks of equal length are sorted together, one row each (numpy sorts
    every row of an (m, n) array with the same call as a 1-d array of length n)."""
    pos = np.empty(len(prop), dtype=np.int64)
    first = np.flatnonzero(np.r_[True, prop[1:] != prop[:-1]]) if len(prop) else prop
    size = np.diff(np.r_[first, len(prop)])
    for n in np.unique(size):
        rows = first[size == n][:, None] + np.arange(n)        # (m, n) pair indices
        pref = np.argsort(value[rows], axis=1)[:, ::-1]        # (m, n) official order
        pos[np.take_along_axis(rows, pref, axis=1)] = np.arange(n)
    return pos


def tied_blocks(prop: np.ndarray, value: np.ndarray, floor: float) -> np.ndarray:
    """(n,) bool: the pairs of the proposers (contiguous blocks) that have two equal values
    at or above ``floor``; only there can the order of ties change a match."""
    high = np.flatnonzero(value >= floor)
    high = high[np.lexsort((value[high], prop[high]))]
    same = (prop[high][1:] == prop[high][:-1]) & (value[high][1:] == value[high][:-1])
    return np.isin(prop, prop[high][1:][same])


def activitynet_ap(p, g, tious, n_classes, n_videos, n_pos) -> np.ndarray:
    """(C, T) AP of the ActivityNet protocol. p, g: dicts of (n,) arrays (cls, vid, start,
    end; p also score) of the predictions and the ground truth; n_pos: (C,) segments."""
    p = _sorted(p, official_rank(p["cls"], p["score"], n_classes))   # by class, then rank
    pi, gi = same_key_pairs(p["cls"] * n_videos + p["vid"], g["cls"] * n_videos + g["vid"])
    tiou = segment_tiou(p["start"][pi], p["end"][pi], g["start"][gi], g["end"][gi])
    # Equal tIoUs fall as in the official argsort()[::-1] (pairs: by pi, then gi); the
    # sort is needed only where two usable tIoUs of one prediction are equal.
    tie = np.zeros(len(pi), dtype=np.int64)
    tied = tied_blocks(pi, tiou, tious.min())
    tie[tied] = official_preference(pi[tied], tiou[tied])
    match = _match_all_thresholds(pi, gi, tiou, tie, tious, False, len(p["cls"]), len(g["cls"]))
    tp = match >= 0
    bounds = np.searchsorted(p["cls"], np.arange(n_classes + 1))
    return np.array([interpolated_ap(tp[:, bounds[c]:bounds[c + 1]], n_pos[c])
                     if n_pos[c] else np.zeros(len(tious)) for c in range(n_classes)])


def thumos14_ap(p, g, amb, tious, n_classes, n_videos, n_pos) -> np.ndarray:
    """(C, T) AP of the THUMOS14 kit: as activitynet_ap, with amb (vid, start, end) the
    Ambiguous segments."""
    # Detections by class, video name, then score within the video (stable: file order).
    p = _sorted(p, np.lexsort((-p["score"], p["vid"], p["cls"])))
    n_det = len(p["cls"])
    gi, di = same_key_pairs(g["cls"] * n_videos + g["vid"], p["cls"] * n_videos + p["vid"])
    overlap = thumos_overlap(g["start"][gi], g["end"][gi], p["start"][di], p["end"][di])
    match = _match_all_thresholds(gi, di, overlap, di, tious, True, len(g["cls"]), n_det)
    matched = np.zeros((len(tious), n_det), dtype=bool)
    t, k = np.nonzero(match >= 0)
    matched[t, match[t, k]] = True
    ai, dj = same_key_pairs(amb["vid"], p["vid"])
    touches = thumos_overlap(amb["start"][ai], amb["end"][ai],
                             p["start"][dj], p["end"][dj]) > 0
    ambiguous = np.zeros(n_det, dtype=bool)
    ambiguous[dj[touches]] = True
    counted = matched | ~ambiguous[None, :]
    rank = np.lexsort((-p["score"], p["cls"]))       # stable: ties keep video, rank order
    cls = p["cls"][rank]
    matched, counted = matched[:, rank], counted[:, rank]
    bounds = np.searchsorted(cls, np.arange(n_classes + 1))
    return np.array([thumos_ap(matched[:, bounds[c]:bounds[c + 1]],
                               counted[:, bounds[c]:bounds[c + 1]], n_pos[c])
                     if n_pos[c] else np.zeros(len(tious)) for c in range(n_classes)])
