"""The CLI's progress line on stderr, kept apart from whatever else writes there while a query runs.

Off a terminal each report is a line of its own. On a terminal the report is one line redrawn in place; so that
a library's log line or warning never lands in the middle of it, file descriptor 2 is a pipe while the query runs,
and one relay copies what arrives to the terminal: it erases the progress line first and redraws it once the
foreign line is complete. Going through the descriptor catches Python handlers that captured sys.stderr at set-up
and native libraries writing to fd 2 alike.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

ERASE = b"\r\x1b[K"


class _Terminal:
    """The terminal behind fd 2, written by the progress reporter and the relay under one lock."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lock = threading.Lock()
        self.status = b""  # the progress line now shown ('' when none)
        self.mid_line = False  # a foreign line has started and not yet ended: the progress line waits

    def show(self, status: str) -> None:
        with self.lock:
            self.status = status.encode()
            if not self.mid_line:
                os.write(self.fd, ERASE + self.status)

    def relay(self, chunk: bytes) -> None:
        with self.lock:
            shown = self.status and not self.mid_line
            self.mid_line = not chunk.endswith(b"\n")
            os.write(self.fd, (ERASE if shown else b"") + chunk + (self.status if self.status and not self.mid_line else b""))

    def clear(self) -> None:
        with self.lock:
            if self.status and not self.mid_line:
                os.write(self.fd, ERASE)
            self.status = b""


@contextmanager
def progress(status: Callable[[float], str], after_s: float) -> Iterator[None]:
    """Once the block runs `after_s` seconds, report `status(elapsed seconds)` on stderr until it ends."""
    done = threading.Event()
    start = time.monotonic()
    live = sys.stderr.isatty()
    terminal, relay = _redirect() if live else (None, None)

    def report() -> None:
        if done.wait(after_s):
            return
        while True:
            text = status(time.monotonic() - start)
            if terminal is not None:
                terminal.show(text)
            else:
                print(text, file=sys.stderr, flush=True)
            if done.wait(0.5 if live else 1.0):
                return

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    try:
        yield
    finally:
        done.set()
        reporter.join()
        if terminal is not None and relay is not None:
            _restore(terminal, relay)


def _redirect() -> tuple[_Terminal, threading.Thread]:
    """Point fd 2 at a pipe whose relay thread writes to the terminal (see the module docstring)."""
    sys.stderr.flush()
    terminal = _Terminal(os.dup(2))
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def copy() -> None:
        while chunk := os.read(read_end, 65536):
            terminal.relay(chunk)
        os.close(read_end)

    relay = threading.Thread(target=copy, daemon=True)
    relay.start()
    return terminal, relay


def _restore(terminal: _Terminal, relay: threading.Thread) -> None:
    """fd 2 back on the terminal; the relay drains the pipe and ends; the progress line is erased."""
    sys.stderr.flush()
    os.dup2(terminal.fd, 2)  # closes the pipe's last write end: the relay reads to its end
    relay.join()
    terminal.clear()
    os.close(terminal.fd)
