"""The one error of bad input (`InputError`), one-line texts, and the one warning line."""
import sys


class InputError(ValueError):
    """Bad user input (a file, an option): reported as one line, exit code 2."""


def one_line(text, limit=200):
    """text on one line (whitespace runs collapsed), cut to `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def first_line(error, limit=200):
    """The first line of an exception's text (library messages can span many lines, e.g.
    torch's advice after a refused load), cut to `limit` characters."""
    lines = str(error).strip().splitlines()
    return one_line(lines[0] if lines else type(error).__name__, limit)


def warn(message):
    """A warning on stderr, one line."""
    print(f"warning: {message}", file=sys.stderr, flush=True)
