"""Timing helpers the benchmarks share (they run as scripts: this directory is on sys.path)."""

import datetime
import os
import platform
import time

import tensorflow as tf


def best_seconds(fn, repeats: int, trials: int = 5) -> float:
    """Seconds per call of ``fn``: the best of ``trials`` averages over ``repeats`` calls
    (after one warm-up call), as timeit reports; results are fetched to the host."""
    fn()
    averages = []
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            tf.nest.map_structure(lambda t: t.numpy(), fn())
        averages.append((time.perf_counter() - start) / repeats)
    return min(averages)


def product_chain(functions, k: int, kind: str = "gauss_newton"):
    """The graph function ``(batch, ()) -> k`` curvature products at one linearization,
    each fed the (normalized) previous one as in CG; from a `GraphFunctions`."""

    def fn(o):
        v = [tf.ones_like(w) for w in o.variables]
        for _ in range(k):
            v = [p / (1 + tf.norm(p)) for p in o.curvature_vector_product(v, kind)]
        return v

    return functions.solver(("products", kind, k), fn)


def provenance(**versions: str) -> str:
    """``Date: ...; <machine>, <n> cores; TensorFlow <v>[, <name> <v> ...]`` for a results
    header (the caller adds the punctuation that follows)."""
    extra = "".join(f", {name} {version}" for name, version in versions.items())
    return (
        f"Date: {datetime.datetime.now().isoformat(timespec='minutes')}; "
        f"{platform.machine()}, {os.cpu_count()} cores; TensorFlow {tf.__version__}{extra}"
    )


def write_results(filename: str, lines) -> None:
    """Prints the lines and writes them to ``benchmarks/results/<filename>``."""
    text = "\n".join(lines)
    print(text)
    with open(
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", filename), "w"
    ) as f:
        f.write(text + "\n")
