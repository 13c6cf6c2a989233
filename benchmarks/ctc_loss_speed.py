"""CTC loss, loss + gradient and Hessian-vector product: ctc_newton against its peers.

Each implementation runs in its own process (one framework per process), all of them
back to back, for several rounds so the noise is visible. Prints a table of ratios
measured in the same run and writes it, with machine, versions and date, to
benchmarks/results/ctc_loss_speed.md (raw numbers in ctc_loss_speed.json).

Peers: tf.nn.ctc_loss with dense and with sparse labels, tf-seq2seq-losses'
classic_ctc_loss, optax.ctc_loss under jax.jit. Install them with
``pip install -e ".[bench]"``; a peer that is not installed is reported as missing.

Usage: python benchmarks/ctc_loss_speed.py [--rounds 2] [--shapes S,M,L]
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

SHAPES = {"S": (8, 50, 30, 10), "M": (32, 200, 64, 40), "L": (64, 500, 128, 100)}
PEERS = ["ctc_newton", "tf_dense", "tf_sparse", "tf_seq2seq_losses", "optax"]
HERE = os.path.dirname(os.path.abspath(__file__))


def make_inputs(shape, dtype=np.float32):
    batch, frames, classes, width = SHAPES[shape]
    rs = np.random.RandomState(0)
    logits = rs.standard_normal((batch, frames, classes)).astype(dtype)
    labels = rs.randint(1, classes, size=(batch, width)).astype(np.int32)
    vector = rs.standard_normal((batch, frames, classes)).astype(dtype)
    return logits, labels, vector


def time_call(fn, budget_s=3.0, min_reps=3, max_reps=30):
    """Median milliseconds of ``fn()`` (which must block on its result) after warm-up."""
    fn()
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or (
        len(times) < max_reps and time.perf_counter() - start < budget_s
    ):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


# ----------------------------------------------------------------------------- workers
def tf_functions(peer, shape):
    import tensorflow as tf

    logits, labels, vector = make_inputs(shape)
    batch, frames, _, width = SHAPES[shape]
    x, v = tf.constant(logits), tf.constant(vector)
    label_length, logit_length = tf.fill([batch], width), tf.fill([batch], frames)
    if peer == "ctc_newton":
        import ctc_newton

        def loss_fn(z):
            return ctc_newton.ctc_loss(labels, z, label_length, logit_length)
    elif peer == "tf_dense":

        def loss_fn(z):
            return tf.nn.ctc_loss(
                labels, z, label_length, logit_length, logits_time_major=False, blank_index=0
            )
    elif peer == "tf_sparse":
        sparse = tf.sparse.from_dense(tf.constant(labels))

        def loss_fn(z):
            return tf.nn.ctc_loss(
                sparse, z, None, logit_length, logits_time_major=False, blank_index=0
            )
    else:
        from tf_seq2seq_losses import classic_ctc_loss

        dense_labels = tf.constant(labels)

        def loss_fn(z):
            return classic_ctc_loss(dense_labels, z, label_length, logit_length, blank_index=0)

    @tf.function
    def loss(z):
        return tf.reduce_sum(loss_fn(z))

    @tf.function
    def loss_and_grad(z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = tf.reduce_sum(loss_fn(z))
        return value, tape.gradient(value, z)

    @tf.function
    def hvp(z, w):
        with tf.GradientTape() as outer:
            outer.watch(z)
            with tf.GradientTape() as inner:
                inner.watch(z)
                value = tf.reduce_sum(loss_fn(z))
            grad = inner.gradient(value, z)
        return outer.gradient(grad, z, output_gradients=w)

    def block(result):
        return [t.numpy() for t in tf.nest.flatten(result)]

    return (lambda: block(loss(x)), lambda: block(loss_and_grad(x)), lambda: block(hvp(x, v)))


def jax_functions(shape):
    import jax
    import jax.numpy as jnp
    import optax

    logits, labels, vector = make_inputs(shape)
    batch, frames, _, width = SHAPES[shape]
    x, v, y = jnp.asarray(logits), jnp.asarray(vector), jnp.asarray(labels)
    logit_pad = jnp.zeros((batch, frames))
    label_pad = jnp.zeros((batch, width))

    def total(z):
        return jnp.sum(optax.ctc_loss(z, logit_pad, y, label_pad, blank_id=0))

    loss = jax.jit(total)
    loss_and_grad = jax.jit(jax.value_and_grad(total))
    hvp = jax.jit(lambda z, w: jax.jvp(jax.grad(total), (z,), (w,))[1])
    block = jax.block_until_ready
    return (lambda: block(loss(x)), lambda: block(loss_and_grad(x)), lambda: block(hvp(x, v)))


def describe(error):
    """The informative line of a (possibly long, graph-mode) error."""
    found = re.findall(r"(\w+Error: [^\n]{0,40})", str(error))
    return found[-1].strip() if found else type(error).__name__


def eager_outcome(peer, hvp):
    """What the same product does eagerly (tf.nn.ctc_loss differs between the modes)."""
    if not peer.startswith("tf_"):
        return ""
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
    try:
        product = hvp()[-1]
        return "; eagerly: " + (
            "all NaN, no error"
            if np.all(np.isnan(product))
            else "some NaN"
            if np.any(np.isnan(product))
            else "finite"
        )
    except Exception as error:  # noqa: BLE001
        return "; eagerly: " + describe(error)
    finally:
        tf.config.run_functions_eagerly(False)


def worker(peer, shapes, gradient_dir):
    """Times one peer on each shape; saves its float32 gradients for the accuracy check."""
    results = {}
    for shape in shapes:
        try:
            if peer == "optax":
                loss, loss_and_grad, hvp = jax_functions(shape)
            else:
                loss, loss_and_grad, hvp = tf_functions(peer, shape)
        except ImportError as error:
            results[shape] = {"error": f"not installed ({error})"}
            continue
        slow = peer == "tf_dense" and shape == "L"
        entry = {
            "loss": time_call(loss, min_reps=2 if slow else 3),
            "loss_grad": time_call(loss_and_grad, min_reps=2 if slow else 3),
        }
        grad = loss_and_grad()
        np.save(os.path.join(gradient_dir, f"{peer}_{shape}.npy"), np.asarray(grad[-1]))
        if peer == "tf_seq2seq_losses" and shape != "S":
            entry["hvp"] = "infeasible (builds the dense Hessian: 32 GiB at M)"
        elif peer == "tf_dense" and shape == "L":
            entry["hvp"] = "not run at L (all-NaN at S and M)"
        else:
            try:
                product = hvp()
                if not np.all(np.isfinite(product[-1] if isinstance(product, list) else product)):
                    entry["hvp"] = "NaN (no error raised)"
                else:
                    entry["hvp"] = time_call(hvp)
            except Exception as error:  # noqa: BLE001 - the peer's failure is the result
                entry["hvp"] = describe(error) + eager_outcome(peer, hvp)
        results[shape] = entry
    return results


def reference_gradients(shapes, gradient_dir):
    """float64 gradients from ctc_newton, the accuracy reference."""
    import tensorflow as tf

    import ctc_newton

    for shape in shapes:
        logits, labels, _ = make_inputs(shape, np.float64)
        batch, frames, _, width = SHAPES[shape]
        x = tf.constant(logits)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(ctc_newton.ctc_loss(labels, x, [width] * batch, [frames] * batch))
        np.save(
            os.path.join(gradient_dir, f"reference_{shape}.npy"), tape.gradient(loss, x).numpy()
        )
    return {}


def peak_memory(peer, shape, what):
    """Peak resident memory increase (MB) of repeated calls, in a fresh process."""
    import resource

    if peer == "optax":
        fns = jax_functions(shape)
    else:
        fns = tf_functions(peer, shape)
    fn = fns[{"loss_grad": 1, "hvp": 2}[what]]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(3):
        fn()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_mb": (after - before) / 1024}


# ----------------------------------------------------------------------------- driver
def run_worker(args):
    command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(args)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    for line in out.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    return {"error": (out.stderr or out.stdout)[-500:]}


def versions():
    found = {"python": platform.python_version()}
    for name in ["tensorflow", "keras", "jax", "optax", "tf-seq2seq-losses", "numpy"]:
        try:
            from importlib.metadata import version

            found[name] = version(name)
        except Exception:  # noqa: BLE001
            found[name] = "not installed"
    return found


def fmt(value):
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--shapes", default="S,M,L")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        kind = spec.pop("kind")
        result = {"time": worker, "reference": reference_gradients, "memory": peak_memory}[kind](
            **spec
        )
        print("RESULT " + json.dumps(result))
        return

    shapes = args.shapes.split(",")
    gradient_dir = tempfile.mkdtemp()
    rounds = []
    for r in range(args.rounds):
        this_round = {}
        for peer in PEERS:
            print(f"round {r + 1}: {peer} ...", flush=True)
            this_round[peer] = run_worker(
                {"kind": "time", "peer": peer, "shapes": shapes, "gradient_dir": gradient_dir}
            )
        rounds.append(this_round)
    run_worker({"kind": "reference", "shapes": shapes, "gradient_dir": gradient_dir})
    accuracy = {}
    for peer in PEERS:
        for shape in shapes:
            path = os.path.join(gradient_dir, f"{peer}_{shape}.npy")
            if os.path.exists(path):
                ref = np.load(os.path.join(gradient_dir, f"reference_{shape}.npy"))
                accuracy[(peer, shape)] = float(np.abs(np.load(path) - ref).max())
    memory = {}
    if "L" in shapes:
        for peer, what in [("ctc_newton", "loss_grad"), ("ctc_newton", "hvp"), ("optax", "hvp")]:
            print(f"memory: {peer} {what} at L ...", flush=True)
            memory[(peer, what)] = run_worker(
                {"kind": "memory", "peer": peer, "shape": "L", "what": what}
            )

    lines = report(rounds, shapes, accuracy, memory)
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "ctc_loss_speed.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(HERE, "results", "ctc_loss_speed.json"), "w") as f:
        json.dump(
            {
                "rounds": rounds,
                "accuracy": {f"{p}/{s}": v for (p, s), v in accuracy.items()},
                "memory": {f"{p}/{w}": v for (p, w), v in memory.items()},
            },
            f,
            indent=1,
        )


def report(rounds, shapes, accuracy, memory):
    lines = [
        "# CTC loss benchmark: ctc_newton vs peers",
        "",
        f"Date: {datetime.datetime.now().isoformat(timespec='minutes')}; machine: "
        f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; "
        f"versions: {versions()}.",
        "float32, CPU, random normal logits, labels in 1..K-1, blank 0, full lengths; "
        "median ms per call after warm-up (each call blocks on its result); one "
        "process per framework, rounds run back to back. Shapes: "
        + ", ".join(f"{k} (B,T,K,L)={v}" for k, v in SHAPES.items() if k in shapes)
        + ".",
        "",
    ]
    for what, title in [
        ("loss", "Loss"),
        ("loss_grad", "Loss + gradient"),
        ("hvp", "Hessian-vector product (w.r.t. logits)"),
    ]:
        lines += [
            f"## {title} (ms per round)",
            "",
            "| implementation | " + " | ".join(shapes) + " |",
            "|---|" + "---|" * len(shapes),
        ]
        for peer in PEERS:
            cells = []
            for shape in shapes:
                values = [
                    rnd[peer].get(shape, {}).get(what, rnd[peer].get("error", "-"))
                    if isinstance(rnd[peer].get(shape), dict)
                    else rnd[peer].get("error", "-")
                    for rnd in rounds
                ]
                cells.append(" / ".join(fmt(v) for v in values))
            lines.append(f"| {peer} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "## Ratios (peer time / ctc_newton time, per round; > 1 means ctc_newton is faster)",
        "",
        "| measure | peer | " + " | ".join(shapes) + " |",
        "|---|---|" + "---|" * len(shapes),
    ]
    for what in ["loss_grad", "hvp"]:
        for peer in PEERS[1:]:
            cells = []
            for shape in shapes:
                ratios = []
                for rnd in rounds:
                    ours = rnd["ctc_newton"].get(shape, {}).get(what)
                    theirs = (
                        rnd[peer].get(shape, {}).get(what)
                        if isinstance(rnd[peer].get(shape), dict)
                        else None
                    )
                    ratios.append(
                        f"{theirs / ours:.2f}x"
                        if isinstance(theirs, float) and isinstance(ours, float)
                        else "-"
                    )
                cells.append(" / ".join(ratios))
            lines.append(f"| {what} | {peer} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## ctc_newton's HVP relative to its own loss + gradient",
        "",
        "| shape | ratio per round |",
        "|---|---|",
    ]
    for shape in shapes:
        ratios = []
        for rnd in rounds:
            ours = rnd["ctc_newton"].get(shape, {})
            if isinstance(ours.get("hvp"), float):
                ratios.append(f"{ours['hvp'] / ours['loss_grad']:.2f}x")
        lines.append(f"| {shape} | " + " / ".join(ratios) + " |")
    lines += [
        "",
        "## float32 gradient accuracy (max abs error vs ctc_newton float64)",
        "",
        "| implementation | " + " | ".join(shapes) + " |",
        "|---|" + "---|" * len(shapes),
    ]
    for peer in PEERS:
        cells = [f"{accuracy[(peer, s)]:.1e}" if (peer, s) in accuracy else "-" for s in shapes]
        lines.append(f"| {peer} | " + " | ".join(cells) + " |")
    if memory:
        lines += [
            "",
            "## Peak memory at L (increase of peak RSS over 3 calls, fresh "
            "process, MB; includes compilation)",
            "",
            "| implementation | what | MB |",
            "|---|---|---|",
        ]
        for (peer, what), value in memory.items():
            lines.append(
                f"| {peer} | {what} | {fmt(value.get('peak_mb', value.get('error', '-')))} |"
            )
    return lines


if __name__ == "__main__":
    main()
