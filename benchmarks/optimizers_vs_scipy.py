"""Each ctc_newton method against scipy's same method on the reference problems.

Problems (from the team's BENCHMARKS.md): 2-D Rosenbrock from (-1.2, 1), and the
ill-conditioned logistic regression (n=5000, d=1000, lambda=1e-4, from w=0).
Records iterations, function/gradient/curvature-product evaluations, final value
and wall time, side by side, and writes benchmarks/results/optimizers_vs_scipy.md.

Usage: python benchmarks/optimizers_vs_scipy.py
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.optimize  # noqa: E402
import tensorflow as tf  # noqa: E402

from _timing import provenance, write_results  # noqa: E402
from ctc_newton import CurvatureOracle  # noqa: E402
from ctc_newton.optimizers import minimize  # noqa: E402

SCIPY = {"trust-ncg": "trust-ncg", "newton-cg": "Newton-CG", "lbfgs": "L-BFGS-B"}
METHODS = ["trust-ncg", "newton-cg", "lbfgs", "gauss-newton", "hessian-free"]


def rosenbrock():
    def oracle():
        w = tf.Variable([-1.2, 1.0], dtype=tf.float64)
        return CurvatureOracle.from_outputs(
            lambda: tf.stack([10.0 * (w[1] - w[0] ** 2), 1.0 - w[0]]),
            lambda r: tf.reduce_sum(r**2),
            [w],
        )

    scipy_args = dict(
        fun=scipy.optimize.rosen,
        x0=np.array([-1.2, 1.0]),
        jac=scipy.optimize.rosen_der,
        hessp=scipy.optimize.rosen_hess_prod,
    )
    return oracle, scipy_args


def logistic():
    rs = np.random.RandomState(0)
    n, d, lam = 5000, 1000, 1e-4
    X = rs.standard_normal((n, d)) * np.logspace(0, -2, d)
    w_true = rs.standard_normal(d) * 0.3
    y = (rs.rand(n) < 1 / (1 + np.exp(-X @ w_true))).astype(np.float64)
    Xt, yt = tf.constant(X), tf.constant(y)

    def oracle():
        w = tf.Variable(tf.zeros(d, tf.float64))
        return CurvatureOracle.from_outputs(
            lambda: tf.linalg.matvec(Xt, w),
            lambda z: tf.reduce_mean(tf.nn.softplus(z) - yt * z),
            [w],
            regularization_fn=lambda: 0.5 * lam * tf.reduce_sum(w * w),
        )

    def f(w):
        z = X @ w
        return np.mean(np.logaddexp(0, z) - y * z) + 0.5 * lam * w @ w

    def g(w):
        return X.T @ (1 / (1 + np.exp(-(X @ w))) - y) / n + lam * w

    def hessp(w, v):
        s = 1 / (1 + np.exp(-(X @ w)))
        return X.T @ (s * (1 - s) * (X @ v)) / n + lam * v

    return oracle, dict(fun=f, x0=np.zeros(d), jac=g, hessp=hessp)


def main():
    lines = [
        "# ctc_newton optimizers vs scipy on the reference problems",
        "",
        provenance(scipy=scipy.__version__) + "; float64; defaults of both libraries "
        "(ctc_newton: gtol 1e-5). Wall times include TensorFlow's eager overhead.",
        "",
    ]
    for name, make in [("Rosenbrock 2-D", rosenbrock), ("logistic regression", logistic)]:
        oracle_fn, scipy_args = make()
        lines += [
            f"## {name}",
            "",
            "| method | library | iterations | f / g / Hv evaluations | final f | wall s |",
            "|---|---|---|---|---|---|",
        ]
        for method in METHODS:
            start = time.perf_counter()
            ours = minimize(oracle_fn(), method=method)
            wall = time.perf_counter() - start
            lines.append(
                f"| {method} | ctc_newton | {ours.nit} | {ours.nfev} / {ours.njev} / "
                f"{ours.nhev} | {ours.fun:.10g} | {wall:.2f} |"
            )
            if method in SCIPY:
                args = dict(scipy_args)
                if method == "lbfgs":
                    args.pop("hessp")
                start = time.perf_counter()
                ref = scipy.optimize.minimize(method=SCIPY[method], **args)
                wall = time.perf_counter() - start
                lines.append(
                    f"| {method} | scipy ({SCIPY[method]}) | {ref.nit} | "
                    f"{ref.nfev} / {ref.get('njev', '-')} / {ref.get('nhev', '-')} | "
                    f"{ref.fun:.10g} | {wall:.2f} |"
                )
        lines.append("")
    write_results("optimizers_vs_scipy.md", lines)


if __name__ == "__main__":
    main()
