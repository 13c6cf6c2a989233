#!/usr/bin/env bash
# End-to-end comparison on the speech and sensor applications with the command line's
# defaults (needs pip install -e ".[examples,speech,activities]"): Adam vs Hessian-free
# from one initialization for the dataset's default epochs, then Adam alone for three
# times as many (it is cheaper per epoch). Writes
# benchmarks/results/{spoken_digits,activities}{,_adam_long}/compare.*.
set -euo pipefail
cd "$(dirname "$0")/.."
ctc-newton compare --dataset spoken-digits --optimizers adam,hessian-free \
  --output-dir benchmarks/results/spoken_digits
ctc-newton compare --dataset spoken-digits --optimizers adam --epochs 18 \
  --output-dir benchmarks/results/spoken_digits_adam_long
ctc-newton compare --dataset activities --optimizers adam,hessian-free \
  --output-dir benchmarks/results/activities
ctc-newton compare --dataset activities --optimizers adam --epochs 24 \
  --output-dir benchmarks/results/activities_adam_long
