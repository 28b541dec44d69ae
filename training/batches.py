"""A VideoSet's videos as torch tensors: the Dataset (one item per video) and the collate
that pads a list of items to the longest video, for training (em_trainer.py) and for the
networks' pass at test time (pipeline/localise.py). The data model itself is dataset.py's."""
import torch
from torch.utils.data import Dataset

from readers.features import video_streams


class SnippetDataset(Dataset):
    """One item per video, as a dict whose entries say their shape."""

    def __init__(self, videos, snippet_seconds):
        self.videos = list(videos)
        self.snippet_seconds = snippet_seconds

    def __len__(self):
        return len(self.videos)

    def __getitem__(self, i):
        v = self.videos[i]
        rgb, flow = video_streams(v.features)       # float32, read from disk when streamed
        return {
            "rgb": rgb,                             # (T, 1024)
            "flow": flow,                           # (T, 1024)
            "labels": v.labels,                     # (K,)
            "name": v.name,
            "index": i,
            "duration": v.duration,                 # seconds
            "snippet_seconds": self.snippet_seconds,
        }


def collate(items):
    """Pad a list of items to the longest video.

    Returns rgb, flow (B, T, 1024) zero-padded; mask (B, T) bool, True on real
    snippets; labels (B, K); lengths (B,); names, indices, durations as lists.
    """
    lengths = torch.tensor([it["rgb"].shape[0] for it in items])
    B, T = len(items), int(lengths.max())
    rgb = items[0]["rgb"].new_zeros(B, T, items[0]["rgb"].shape[1])
    flow = items[0]["flow"].new_zeros(B, T, items[0]["flow"].shape[1])
    for b, it in enumerate(items):
        rgb[b, :lengths[b]] = it["rgb"]
        flow[b, :lengths[b]] = it["flow"]
    mask = torch.arange(T)[None, :] < lengths[:, None]            # (B, T)
    return {
        "rgb": rgb, "flow": flow, "mask": mask, "lengths": lengths,
        "labels": torch.stack([it["labels"] for it in items]),     # (B, K)
        "names": [it["name"] for it in items],
        "indices": [it["index"] for it in items],
        "durations": [it["duration"] for it in items],
    }
