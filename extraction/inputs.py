"""The videos an extraction is given: the files (a folder: its videos), each one's name
(its file name without the extension) and split, checked before anything is written."""
import os
from dataclasses import dataclass

from extraction.frames import VIDEO_EXTENSIONS
from core.errors import InputError
from core.names import check_video_name
from core.safe_load import read_rows

SPLITS = ("train", "test")


@dataclass
class Job:
    name: str
    path: str          # absolute
    split: str


def _dangling(path):
    return os.path.islink(path) and not os.path.exists(path)


def find_videos(inputs):
    """(video files, problem lines) from files and folders (a folder: its files with a video
    extension, sorted; not recursive). A file given twice (directly and through its folder)
    counts once; a symbolic link to nothing is a problem line. A path that does not exist
    is an InputError."""
    paths = []
    for given in inputs:
        if os.path.isdir(given):
            names = sorted(n for n in os.listdir(given) if n.lower().endswith(VIDEO_EXTENSIONS)
                           and (os.path.isfile(os.path.join(given, n))
                                or _dangling(os.path.join(given, n))))
            if not names:
                raise InputError(f"{given}: no video file in the folder (extensions "
                                 f"{', '.join(VIDEO_EXTENSIONS)})")
            paths += [os.path.join(given, n) for n in names]
        elif os.path.isfile(given) or _dangling(given):
            paths.append(given)
        else:
            raise InputError(f"{given}: file or folder not found")
    paths = list(dict.fromkeys(os.path.abspath(p) for p in paths))
    problems = [f"{p}: a symbolic link to {os.readlink(p)}, which does not exist"
                for p in paths if _dangling(p)]
    return [p for p in paths if not _dangling(p)], problems


def name_room(out):
    """The longest video name, in bytes, whose files fit in the file system of out: its
    longest file name less what a feature file's temporary name adds ('.tmp-' + 8 + '.npy',
    core/files.write_atomically)."""
    folder = os.path.abspath(out)
    while not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    try:
        longest = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        longest = 255
    return longest - len(".tmp-") - 8 - len(".npy")


def video_name(path):
    """A video's name: its file name without the extension."""
    return os.path.splitext(os.path.basename(path))[0]


def read_split_list(path):
    """{video: split} of a file of lines 'video split'."""
    splits = {}
    for number, (name, split) in read_rows(path, 2, "video split"):
        name = check_video_name(name, f"{path}: line {number}")
        if split not in SPLITS:
            raise InputError(f"{path}: line {number}: split {split!r}, expected "
                             f"{' or '.join(SPLITS)}")
        if splits.get(name, split) != split:
            raise InputError(f"{path}: line {number}: video {name} is listed in two splits")
        splits[name] = split
    return splits


def jobs_of(paths, split, split_list, out="."):
    """([Job], [problem line]): one job per video, named after its file; a bad name, a name
    too long for the file system of `out`, or a name two files share, is a problem of those
    files (left out). A video the split list does not name is an InputError."""
    splits = read_split_list(split_list) if split_list else None
    names, problems, room = {}, [], name_room(out)
    for path in paths:
        try:
            name = check_video_name(video_name(path), path)
        except InputError as e:
            problems.append(str(e))
            continue
        if len(os.fsencode(name)) > room:
            problems.append(f"{path}: the name is {len(os.fsencode(name))} bytes long; its "
                            f"feature files need names of at most {room} bytes in {out}")
            continue
        names.setdefault(name, []).append(path)
    jobs = []
    for name, where in names.items():
        if len(where) > 1:
            problems += [f"{p}: two videos have the name {name} ({', '.join(where)}); rename "
                         f"one" for p in where]
            continue
        if splits is not None and name not in splits:
            raise InputError(f"{split_list}: video {name} ({where[0]}) is not listed")
        jobs.append(Job(name, where[0], splits[name] if splits is not None else split))
    return jobs, problems
