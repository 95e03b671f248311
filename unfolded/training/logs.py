"""The run's log lines: each once, in the terminal and in `<run folder>/train.log` (the file handler Hydra's
job logging puts on the root logger), including what is printed rather than logged (`echo`)."""

from __future__ import annotations

import io
import logging
import sys

log = logging.getLogger(__name__)

FILE_WIDTH = 110  # columns of a rich table written to the log file


def setup() -> None:
    """Call at the start of a Hydra job (train.py), once Hydra has configured logging.

    `import lightning` gives the `lightning` logger its own stderr handler and lets it propagate to the root
    too: every Lightning INFO line came twice, and only one copy reached train.log. With Hydra's handlers on
    the root, Lightning's are dropped. Python warnings go through logging as well, so train.log has them.
    """
    if not logging.getLogger().handlers:
        return  # not under Hydra: Lightning's handlers are the only ones
    import lightning  # noqa: F401  (its import adds the handler removed below)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler and handler.stream in (sys.stdout, sys.__stdout__):
            handler.setStream(_CurrentStdout())
    logging.captureWarnings(True)


class _CurrentStdout:
    """sys.stdout as it is at each write. Hydra's console handler kept the stdout of its start, so a log line
    cut through the rich bar in a terminal; the bar swaps sys.stdout for a writer that prints above it."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _log_files() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


def to_file(text: str, level: int = logging.INFO) -> None:
    """`text` in the run's log file(s) only (the terminal already shows it, e.g. in a progress bar)."""
    handlers = _log_files()
    if not handlers:
        return
    if "\n" in text:
        text = "\n" + text  # a table starts on its own line, after the time stamp
    record = log.makeRecord(log.name, level, __file__, 0, text, None, None)
    for h in handlers:
        if record.levelno >= h.level:
            h.handle(record)


def plain_text(renderable) -> str:
    """What rich prints for `renderable` (a str, Table, ...), without colours, FILE_WIDTH columns wide."""
    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=FILE_WIDTH, color_system=None, force_terminal=False).print(
        renderable, markup=False, soft_wrap=isinstance(renderable, str))
    return buffer.getvalue().rstrip("\n")


def echo(renderable) -> None:
    """Print `renderable` (text or a rich object such as a Table) to the terminal as rich does (above a
    running progress bar), and its plain text to the run's log file: what a run prints for its user (the
    results table) is in train.log too."""
    from rich import get_console

    # text as given: a path or value in [brackets] is not a style, a long line is not cut into two
    get_console().print(renderable, markup=False, soft_wrap=isinstance(renderable, str))
    to_file(plain_text(renderable))
