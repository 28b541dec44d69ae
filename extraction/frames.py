"""Frames of a video in the W-TALC convention: decoded with PyAV, turned as the stream's
display matrix says (phone videos: portrait), resampled to 25 fps by timestamp (each output
frame is the decoded frame nearest in time, so any frame rate works, variable ones too),
resized so the short side is 256 (bilinear), the centre 224 x 224 cut out, values scaled to
[-1, 1].

Frames stream through one at a time: nothing holds more than the frames of one chunk. The
work is bounded whatever the file says: a video may last at most its video stream's declared
duration (within the truncation tolerance) and at most --max-hours; one file is one video
(only demuxers that read a single file, FORMATS).
"""
from fractions import Fraction

import av
import av.logging
import cv2
import numpy as np

from core.errors import InputError, first_line

FPS = 25                 # frames per second of the features
SHORT_SIDE = 256         # the resize: short side, in pixels
CROP = 224               # the centre crop, in pixels
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv",
                    ".wmv", ".3gp", ".ts", ".ogv")
# FFmpeg demuxers that read one file and nothing else (a concat list, a playlist, an HLS or
# DASH manifest or an image pattern opens other files or URLs: refused)
FORMATS = ("mov", "matroska", "avi", "flv", "mpeg", "mpegts", "asf", "ogg", "m4v", "mpegvideo")
MAX_HOURS = 6.0          # the longest video accepted (--max-hours)
MAX_ASPECT = 16          # the widest frame accepted: long side / short side
GAP_WARN = 10.0          # seconds between two frames above which a video is warned of


# ----------------------------------------------------------------------------- decoding

def reason(error):
    """FFmpeg's words for an error, without its number and the file name."""
    return getattr(error, "strerror", None) or first_line(error, 120)


def _open(path):
    """av.open reading one file with the demuxers of FORMATS only; FFmpeg's log lines are
    captured (not printed), and a refused format is named."""
    level, repeated = av.logging.get_level(), av.logging.get_skip_repeated()
    av.logging.set_level(av.logging.ERROR)
    av.logging.set_skip_repeated(False)         # else the same refusal is said only once
    try:
        with av.logging.Capture() as logs:
            try:
                return av.open(str(path), options={"format_whitelist": ",".join(FORMATS),
                                                   "protocol_whitelist": "file"})
            except av.FFmpegError:
                refused = [name for _, name, text in logs if "not on whitelist" in text]
                if refused:
                    raise InputError(
                        f"{path}: a {refused[0]} file, which opens other files or URLs; "
                        f"extract.py reads one file per video ({', '.join(FORMATS)})") from None
                raise
    finally:
        av.logging.set_level(level)
        av.logging.set_skip_repeated(repeated)


def open_video(path, threads=0):
    """(container, its first video stream), decoding with `threads` threads (0: FFmpeg's
    choice). InputError naming the file when it is not a video, has no video stream, or is
    of a format that opens other files."""
    try:
        container = _open(path)
    except InputError:
        raise
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


def _clock(text):
    """Seconds of a Matroska DURATION tag 'HH:MM:SS.fffffffff' (None when not one)."""
    try:
        h, m, sec = str(text).split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except ValueError:
        return None


def declared(container, stream):
    """(seconds, own) of how long the video stream says it lasts: its own duration (mp4),
    else its DURATION tag (Matroska, WebM), else the container's, which may count a longer
    audio track (own: False, unless the video is the container's only stream);
    (None, False) when nothing says."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base), True
    tagged = _clock(stream.metadata.get("DURATION", ""))
    if tagged:
        return tagged, True
    if container.duration:
        return container.duration / av.time_base, len(container.streams) == 1
    return None, False


def tolerance(seconds, fps):
    """How far a video's last frame may end before its declared duration (or its frames
    after it): 2 frames or 1 %, whichever is more."""
    return max(2 / (fps or FPS), seconds / 100)


def check_size(path, width, height):
    """InputError when a frame of width x height cannot be resized to the convention."""
    if not width or not height:
        raise InputError(f"{path}: the video stream has no frame size")
    if max(width, height) > MAX_ASPECT * min(width, height):
        long = round(max(width, height) * SHORT_SIDE / min(width, height))
        raise InputError(f"{path}: frames of {width} x {height} would be resized to "
                         f"{SHORT_SIDE} x {long} (short side {SHORT_SIDE}); frames more than "
                         f"{MAX_ASPECT} times as long as wide are refused")


def probe(path, max_hours=MAX_HOURS):
    """What the container says of its first video stream, without decoding: dict(width,
    height, fps (average, None when unknown), frames (None when unknown), seconds (declared,
    None when unknown)). InputError as open_video, and when the frames cannot be resized or
    the declared duration is over max_hours."""
    container, stream = open_video(path)
    with container:
        rate = stream.average_rate
        info = {"width": stream.codec_context.width, "height": stream.codec_context.height,
                "fps": float(rate) if rate else None, "frames": stream.frames or None,
                "seconds": declared(container, stream)[0]}
    check_size(path, info["width"], info["height"])
    if info["seconds"] and info["seconds"] > max_hours * 3600:
        raise InputError(f"{path}: declares {info['seconds'] / 3600:.1f} hours, more than "
                         f"--max-hours {max_hours:g}")
    return info


def _past(path, t, seconds, max_hours):
    said = (f"past the video stream's declared duration {seconds:.2f} s" if seconds
            and seconds <= max_hours * 3600 else f"past --max-hours {max_hours:g}")
    return InputError(f"{path}: a frame at {float(t):.2f} s, {said}")


def timed_frames(path, threads=0, max_hours=MAX_HOURS, notes=None):
    """Yield (time s, duration s or None, av.VideoFrame) of every decoded frame in
    presentation order; times are Fractions from the first frame's, None when the frame has
    no timestamp. A damaged or truncated file, or a frame later than the declared duration
    allows (or than max_hours), is an InputError naming it. notes (any object) gets
    .rotation (degrees counter-clockwise, of the first frame) and .longest_gap (seconds,
    time after the first frame)."""
    container, stream = open_video(path, threads)
    with container:
        seconds, own = declared(container, stream)
        fps = float(stream.average_rate) if stream.average_rate else None
        limit = min(seconds + tolerance(seconds, fps) if seconds else float("inf"),
                    max_hours * 3600)
        decoded, t0, last, gap = 0, None, None, (0.0, 0.0)
        try:
            for frame in container.decode(stream):
                base = frame.time_base or stream.time_base
                t = frame.pts * base if frame.pts is not None and base else None
                d = frame.duration * base if frame.duration and base else None
                if t is not None:
                    t0 = t if t0 is None else t0
                    t -= t0
                    if t > limit:
                        raise _past(path, t, seconds, max_hours)
                    if last is not None and t - last[0] > gap[0]:
                        gap = (float(t - last[0]), float(last[0]))
                    last = (t, d)
                if decoded == 0 and notes is not None:
                    notes.rotation = int(round(frame.rotation or 0))
                decoded += 1
                yield t, d, frame
        except av.FFmpegError as e:
            raise InputError(f"{path}: damaged or truncated video: decoding stopped after "
                             f"{decoded} frames ({reason(e)})") from None
        if notes is not None:
            notes.longest_gap = gap
        _check_complete(path, stream, decoded, seconds if own else None, last, fps)


def _check_complete(path, stream, decoded, declared, last, fps):
    """InputError when fewer frames were decoded than the container lists, or, in a
    container that lists none (Matroska, WebM, ...), when the last frame ends before the
    video's own declared duration (None: not known, no check), beyond the tolerance."""
    if decoded == 0:
        raise InputError(f"{path}: no frame could be decoded")
    if stream.frames:
        if decoded < stream.frames - max(2, stream.frames // 100):
            raise InputError(f"{path}: truncated video: {decoded} of the {stream.frames} "
                             f"frames its index lists could be decoded")
        return
    if declared and last is not None:
        end = float(last[0] + (last[1] or Fraction(1, round(fps or FPS))))
        if end < declared - tolerance(declared, fps):
            raise InputError(f"{path}: truncated video: its frames end at {end:.2f} s, its "
                             f"header declares {declared:.2f} s")


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


def frames_at(path, fps=FPS, threads=0, max_hours=MAX_HOURS, notes=None):
    """Yield (k, source index, av.VideoFrame) of a video resampled to `fps`: the source index
    tells when a decoded frame is used again (upsampling), so that it is converted once.
    max_hours, notes: as timed_frames."""
    numbered = ((t, d, (i, f)) for i, (t, d, f) in
                enumerate(timed_frames(path, threads, max_hours, notes)))
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
    """av.VideoFrame -> (H, W, 3) uint8 RGB, as displayed: turned by the frame's rotation
    (its display matrix, degrees counter-clockwise, to the nearest quarter turn)."""
    image = frame.to_ndarray(format="rgb24")                        # (h, w, 3) as coded
    turns = int(round((frame.rotation or 0) / 90)) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def resize_to(image, shape):
    """(H, W, C) uint8 -> (shape[0], shape[1], C), bilinear (a frame of another size than the
    video's first is scaled to the first one's)."""
    if image.shape[:2] == tuple(shape):
        return image
    return cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def gray(image):
    """(H, W, 3) uint8 RGB -> (H, W) uint8 grey (ITU-R BT.601 weights)."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
