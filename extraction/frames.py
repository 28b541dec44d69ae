"""Frames of a video in the W-TALC convention: decoded with PyAV, resampled to 25 fps by
timestamp (each output frame is the decoded frame nearest in time, so any frame rate works,
variable ones too), resized so the short side is 256 (bilinear), the centre 224 x 224 cut
out, values scaled to [-1, 1].

Frames stream through one at a time: nothing holds more than the frames of one chunk."""
from fractions import Fraction

import av
import cv2
import numpy as np

from core.errors import InputError, first_line

FPS = 25                 # frames per second of the features
SHORT_SIDE = 256         # the resize: short side, in pixels
CROP = 224               # the centre crop, in pixels
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv",
                    ".wmv", ".3gp", ".ts", ".ogv")


# ----------------------------------------------------------------------------- decoding

def reason(error):
    """FFmpeg's words for an error, without its number and the file name."""
    return getattr(error, "strerror", None) or first_line(error, 120)


def open_video(path, threads=0):
    """(container, its first video stream), decoding with `threads` threads (0: FFmpeg's
    choice). InputError naming the file when it is not a video or has no video stream."""
    try:
        container = av.open(str(path))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable video ({reason(e)})") from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise InputError(f"{path}: no video stream (streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = threads
    return container, stream


def probe(path):
    """What the container says of its first video stream, without decoding: dict(width,
    height, fps (average, None when unknown), frames (None when unknown), seconds (None when
    unknown)). InputError as open_video."""
    container, stream = open_video(path)
    with container:
        rate = stream.average_rate
        seconds = (float(stream.duration * stream.time_base) if stream.duration
                   and stream.time_base else container.duration / av.time_base
                   if container.duration else None)
        return {"width": stream.codec_context.width, "height": stream.codec_context.height,
                "fps": float(rate) if rate else None, "frames": stream.frames or None,
                "seconds": seconds}


def timed_frames(path, threads=0):
    """Yield (time s, duration s or None, av.VideoFrame) of every decoded frame in
    presentation order; times are Fractions, None when the frame has no timestamp.
    A damaged or truncated file is an InputError naming it."""
    container, stream = open_video(path, threads)
    decoded = 0
    with container:
        try:
            for frame in container.decode(stream):
                base = frame.time_base or stream.time_base
                t = frame.pts * base if frame.pts is not None and base else None
                d = frame.duration * base if frame.duration and base else None
                decoded += 1
                yield t, d, frame
        except av.FFmpegError as e:
            raise InputError(f"{path}: damaged or truncated video: decoding stopped after "
                             f"{decoded} frames ({reason(e)})") from None
        if stream.frames and decoded < stream.frames - max(2, stream.frames // 100):
            raise InputError(f"{path}: truncated video: {decoded} of the {stream.frames} "
                             f"frames its index lists could be decoded")
        if decoded == 0:
            raise InputError(f"{path}: no frame could be decoded")


def resample(timed, fps=FPS):
    """Yield (k, item) for k = 0, 1, ...: the item whose time is nearest k / fps (times
    counted from the first item's; a tie goes to the later item), for every k / fps before
    the end of the last item (its time plus its duration, else the last gap between items,
    else 1 / fps). timed: (time, duration or None, item) in presentation order; an item
    without a time follows the previous one by the last gap; an item not later than the
    previous one is skipped."""
    step = Fraction(1, fps)
    k, t0, prev, gap, last_duration = 0, None, None, None, None
    for t, duration, item in timed:
        if t is None:
            t = (prev[0] + (gap or step)) if prev is not None else 0
        t = Fraction(t)
        if t0 is None:
            t0 = t
        t -= t0
        if prev is not None:
            if t <= prev[0]:
                continue
            gap = t - prev[0]
            middle = (prev[0] + t) / 2
            while k * step < middle:
                yield k, prev[1]
                k += 1
        prev, last_duration = (t, item), duration
    if prev is None:
        return
    end = prev[0] + Fraction(last_duration or gap or step)
    while k * step < end:
        yield k, prev[1]
        k += 1


def frames_at(path, fps=FPS, threads=0):
    """Yield (k, source index, av.VideoFrame) of a video resampled to `fps`: the source index
    tells when a decoded frame is used again (upsampling), so that it is converted once."""
    numbered = ((t, d, (i, f)) for i, (t, d, f) in enumerate(timed_frames(path, threads)))
    for k, (i, frame) in resample(numbered, fps):
        yield k, i, frame


# ----------------------------------------------------------------------------- images

def resize_short_side(image, short=SHORT_SIDE):
    """(H, W, C) uint8 -> resized bilinearly so that min(H, W) == short, aspect kept."""
    h, w = image.shape[:2]
    if h <= w:
        size = (max(1, int(w * short / h + 0.5)), short)            # cv2: (width, height)
    else:
        size = (short, max(1, int(h * short / w + 0.5)))
    if (w, h) == size:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def centre_crop(image, size=CROP):
    """The centre size x size of an (H, W, ...) array (the odd pixel left at the end)."""
    h, w = image.shape[:2]
    if h < size or w < size:
        raise ValueError(f"image {h} x {w} is smaller than the crop {size}")
    top, left = (h - size) // 2, (w - size) // 2
    return image[top:top + size, left:left + size]


def rgb_values(crop):
    """uint8 (H, W, 3) -> float32 in [-1, 1]."""
    return crop.astype(np.float32) / 127.5 - 1.0


def to_rgb(frame):
    """av.VideoFrame -> (H, W, 3) uint8 RGB."""
    return frame.to_ndarray(format="rgb24")


def gray(image):
    """(H, W, 3) uint8 RGB -> (H, W) uint8 grey (ITU-R BT.601 weights)."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
