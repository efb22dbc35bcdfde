"""SIGTERM (and friends): commit what was acknowledged, then let the previous handler act.

The handler runs on the main thread between two bytecodes, possibly while that thread is inside
a store method holding one of its locks, so it takes none: it only polls each store's queue
until the writer thread has committed it (bounded by ``timeout_s``), then chains.
"""

from __future__ import annotations

import os
import signal
import threading
import weakref
from types import FrameType
from typing import Any

# Every open store; the atexit hook and the signal handler walk it.
_open_stores: weakref.WeakSet[Any] = weakref.WeakSet()
_previous: dict[int, Any] = {}
_timeout_s = 30.0


def _handler(signum: int, frame: FrameType | None) -> None:
    for store in list(_open_stores):
        store._drain_for_signal(_timeout_s)
    previous = _previous.get(signum)
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        # Default action (or a handler not installed from Python): die by the same signal,
        # so the parent still sees "terminated by SIGTERM".
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def install_signal_handlers(
    signals: tuple[int, ...] = (signal.SIGTERM,), timeout_s: float = 30.0
) -> None:
    """Makes the given signals first flush every open store (waiting at most ``timeout_s``),
    then run whatever handler was installed before (the default for SIGTERM: terminate).
    Call from the main thread; calling again is harmless. Install it after frameworks that
    set their own handler (uvicorn does at start-up) so theirs runs after the flush."""
    global _timeout_s
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("install_signal_handlers must be called from the main thread")
    _timeout_s = float(timeout_s)
    for signum in signals:
        current = signal.getsignal(signum)
        if current is _handler:
            continue
        _previous[signum] = current
        signal.signal(signum, _handler)
