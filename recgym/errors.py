"""One error type and one exit-code contract for every recgym command.

Library code raises :class:`RecgymError` (or a subclass) with a one-line message that names the
culprit (file and line, argument, column); a command's ``main`` is wrapped by :func:`cli` and turns
it into that line on stderr and the exit status below. Nothing else is printed, no traceback.

======  ===========================================================================
status  meaning
======  ===========================================================================
0       success
1       an unexpected error (a bug: the traceback is printed)
2       bad input: an argument, a file, a column, a dataset name, a checkpoint that does not fit,
        an output folder holding jobs run with other settings, a download that failed
3       training diverged (a non-finite loss or parameter)
4       busy: another process holds the output (a job lock), or the output is not writable (a file,
        a read-only filesystem, no permission)
5       some jobs of a multi-job command failed (the others finished and were written)
130     interrupted (Ctrl-C)
======  ===========================================================================
"""

from __future__ import annotations

import functools
import sys
from typing import Callable

EXIT_OK, EXIT_BUG, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_BUSY, EXIT_JOBS_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130


class RecgymError(Exception):
    """An error the user can fix; ``code`` is the command's exit status (2 unless a subclass says)."""

    code: int = EXIT_BAD_INPUT

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class BadInputError(RecgymError, ValueError):
    """An argument, file, column or checkpoint is wrong (exit 2). Also a ``ValueError``."""

    code = EXIT_BAD_INPUT


class DivergedError(RecgymError, FloatingPointError):
    """Training produced a non-finite loss or parameter (exit 3)."""

    code = EXIT_DIVERGED


class BusyError(RecgymError):
    """Another process holds the output, or the output cannot be written (exit 4)."""

    code = EXIT_BUSY


def cli(prog: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorate a command's ``main(argv) -> int``: a :class:`RecgymError` becomes ``prog: error: msg``
    on stderr and its exit status; Ctrl-C exits 130; argparse's own exit is returned as its status (so
    ``main([...])`` returns the code in tests too); anything else is a bug and keeps its traceback."""

    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(*args, **kwargs) -> int:
            try:
                return main(*args, **kwargs)
            except RecgymError as e:
                print(f"{prog}: error: {e}", file=sys.stderr, flush=True)
                return e.code
            except SystemExit as e:  # argparse's usage error (2) or --help (0), already printed
                if e.code is None or isinstance(e.code, int):
                    return e.code or 0
                raise
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr, flush=True)
                return EXIT_INTERRUPTED

        return run

    return wrap
