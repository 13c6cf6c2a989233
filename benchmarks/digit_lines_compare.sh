#!/usr/bin/env bash
# End-to-end comparison on the digit-lines task with the command line's defaults:
# Adam vs Hessian-free from one initialization for the default 6 epochs, then Adam alone
# for 30 epochs (it is far cheaper per epoch), loss and test label error rate against
# epochs and wall-clock time. Writes benchmarks/results/digit_lines{,_adam30}/compare.*.
set -euo pipefail
cd "$(dirname "$0")/.."
ctc-newton compare --optimizers adam,hessian-free --epochs 6 \
  --output-dir benchmarks/results/digit_lines
ctc-newton compare --optimizers adam --epochs 30 \
  --output-dir benchmarks/results/digit_lines_adam30
