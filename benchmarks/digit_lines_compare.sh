#!/usr/bin/env bash
# End-to-end comparison on the digit-lines task: Adam vs Hessian-free from one
# initialization, loss and test label error rate against epochs and wall-clock time.
# Writes benchmarks/results/digit_lines/compare.{png,md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
ctc-newton compare --optimizers adam,hessian-free --epochs "${EPOCHS:-6}" \
  --output-dir benchmarks/results/digit_lines "$@"
