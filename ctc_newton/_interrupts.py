"""Ctrl-C during a second-order ``fit`` is never lost.

Python raises the KeyboardInterrupt of a SIGINT in whatever code runs at that moment.
If that is a finalizer (TensorFlow frees graph functions in ``__del__`` all the time),
the exception is printed as "ignored" and dropped, and ``fit`` would train on. The
handler installed here also records the interrupt; the next second-order step raises
it again before it touches the weights, which then are the last accepted ones.
"""

import signal
import threading

_pending = False


def _handler(signum, frame):
    global _pending
    _pending = True
    signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt


def watch() -> None:
    """Records SIGINTs from now on (main thread, default handler only); forgets old ones."""
    global _pending
    _pending = False
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _handler)


def raise_if_dropped() -> None:
    """Raises the KeyboardInterrupt of a SIGINT that no code has seen yet."""
    global _pending
    if _pending:
        _pending = False
        raise KeyboardInterrupt


def seen() -> None:
    """A KeyboardInterrupt reached the caller: nothing to raise again."""
    global _pending
    _pending = False
