"""Names and text read from data files. A video name is data (`check_video_name`): it becomes
part of file paths and of output lines, so a name with a path separator, '.'/'..',
whitespace or a control character is refused."""
import unicodedata

import numpy as np

from core.errors import InputError, one_line


def as_text(x, where, what="a string"):
    """A str from a str or UTF-8 bytes (numpy's too); InputError otherwise."""
    if isinstance(x, (bytes, np.bytes_)):
        try:
            return bytes(x).decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{where}: {what} {one_line(repr(bytes(x)), 60)} is not UTF-8"
                             ) from None
    if isinstance(x, (str, np.str_)):
        return str(x)
    raise InputError(f"{where}: expected {what}, found {type(x).__name__}")


def _name_problem(name):
    if name == "":
        return "empty"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if name in (".", ".."):
        return "is a relative folder name"
    for c in name:
        if c.isspace():
            return "contains whitespace"
        if unicodedata.category(c).startswith("C"):
            return "contains a control character"
    return None


def check_video_name(name, where):
    """The video name as a str, if it is a plain name (it becomes part of file paths and of
    output lines); InputError naming `where` and the video otherwise."""
    name = as_text(name, where, "video name")
    problem = _name_problem(name)
    if problem:
        raise InputError(f"{where}: video {one_line(repr(name), 80)}: the name {problem}; a "
                         f"video name must be a plain file name without whitespace")
    return name


def check_label(label, where, video):
    """A class label: a non-empty string (bytes decoded)."""
    if label is None or isinstance(label, (bool, int, float, list, dict)):
        raise InputError(f"{where}: video {video}: label {label!r} is not a class name")
    label = as_text(label, f"{where}: video {video}", "label")
    if not label.strip():
        raise InputError(f"{where}: video {video}: empty label")
    return label
