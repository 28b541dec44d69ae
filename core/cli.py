"""The command-line frame of every command: one parser class, one error line, exit 2."""
import argparse
import sys

from core.errors import InputError, one_line

ERROR_LIMIT = 400       # characters of an error line


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line is reported as one line (no usage block), exit 2."""

    def error(self, message):
        print(f"error: {one_line(message, ERROR_LIMIT)}", file=sys.stderr)
        sys.exit(2)


def cli(main, argv=None):
    """Run a command's main(argv). Bad input (InputError, or a file that cannot be read or
    written) is one line `error: ...` on stderr and exit code 2; no traceback."""
    try:
        return main(argv)
    except InputError as e:
        message = str(e)
    except OSError as e:
        message = f"{e.filename or ''}: {e.strerror or e}"
    print(f"error: {one_line(message, ERROR_LIMIT)}", file=sys.stderr)
    return 2
