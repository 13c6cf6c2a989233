"""Independent references for the CTC loss: brute-force path enumeration."""

import itertools

import numpy as np


def collapse(path, blank):
    """CTC's many-to-one map: merge repeats, then drop blanks."""
    out, previous = [], None
    for k in path:
        if k != previous and k != blank:
            out.append(k)
        previous = k
    return out


def brute_force(logits, label, blank):
    """Loss, gradient and Hessian of one sequence by enumerating every path.

    Uses the definitions directly: L = sum_t logsumexp(a_t) - log sum_{pi in B^-1(z)}
    exp(sum_t a_t[pi_t]); its Hessian is the per-frame softmax Hessian minus the
    posterior covariance of the path indicator vectors.
    """
    T, K = logits.shape
    paths = [p for p in itertools.product(range(K), repeat=T) if collapse(p, blank) == list(label)]
    lse = np.log(np.exp(logits).sum(axis=1))
    y = np.exp(logits - lse[:, None])
    if not paths:
        return np.inf, np.zeros_like(logits), np.zeros((T * K, T * K))
    scores = np.array([sum(logits[t, p[t]] for t in range(T)) for p in paths])
    top = scores.max()
    log_z = top + np.log(np.exp(scores - top).sum())
    weights = np.exp(scores - log_z)
    indicators = np.zeros((len(paths), T * K))
    for i, p in enumerate(paths):
        indicators[i, [t * K + p[t] for t in range(T)]] = 1.0
    mean = weights @ indicators
    cov = (indicators * weights[:, None]).T @ indicators - np.outer(mean, mean)
    soft = np.zeros((T * K, T * K))
    for t in range(T):
        soft[t * K : (t + 1) * K, t * K : (t + 1) * K] = np.diag(y[t]) - np.outer(y[t], y[t])
    loss = lse.sum() - log_z
    grad = y - mean.reshape(T, K)
    return loss, grad, soft - cov
