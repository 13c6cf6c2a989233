"""The output-space curvature ``H_out`` of the Gauss-Newton ``J^T H_out J``, per loss.

A Gauss-Newton product differentiates the output loss twice with respect to the
model outputs. For a loss convex in the outputs (mean squared error,
cross-entropy from logits) that exact Hessian is PSD and is the right ``H_out``,
so such losses need no entry here. A loss that is not convex in its outputs
(CTC) registers a context under which its second derivative is its PSD
Gauss-Newton instead. The oracle records ``H_out`` with every registered context
entered, so an output loss built from registered losses, under any reduction or
weighting, gets its PSD form. Adding such a loss is one `register` call; no
other loss's module changes.

Register before building oracles: a compiled oracle's graphs are traced once.
"""

import contextlib
from typing import Callable, ContextManager, Dict, Iterator, Tuple

from ctc_newton.losses import ctc

__all__ = ["register", "unregister", "registered", "gauss_newton_output_curvature"]

_CONTEXTS: Dict[str, Callable[[], ContextManager]] = {}


def register(name: str, context: Callable[[], ContextManager]) -> None:
    """Registers a loss's switch to its PSD output curvature.

    Args:
      name: what the entry is called (replaces an entry of that name).
      context: ``() -> context manager``; within it, second derivatives of the
        loss w.r.t. its inputs are its PSD Gauss-Newton (first derivatives and
        values must be unchanged).

    Raises:
      TypeError: ``context`` is not callable.
    """
    if not callable(context):
        raise TypeError(
            f"`context` must be a callable returning a context manager, got {context!r}."
        )
    _CONTEXTS[name] = context


def unregister(name: str) -> None:
    """Removes the entry ``name``.

    Raises:
      KeyError: no entry of that name; the message lists the registered ones.
    """
    if name not in _CONTEXTS:
        raise KeyError(f"No output curvature named {name!r}; registered: {registered()}.")
    del _CONTEXTS[name]


def registered() -> Tuple[str, ...]:
    """The names of the registered output curvatures."""
    return tuple(_CONTEXTS)


@contextlib.contextmanager
def gauss_newton_output_curvature() -> Iterator[None]:
    """Within this context every registered loss differentiates twice to its PSD form.

    Yields:
      None.
    """
    with contextlib.ExitStack() as stack:
        for context in list(_CONTEXTS.values()):
            stack.enter_context(context())
        yield


# Frame-wise softmax Hessian with the alignment occupancies held fixed.
register("ctc", ctc.gauss_newton_curvature)
