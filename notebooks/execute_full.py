"""Runs notebooks at their full budget and stores them with their outputs (the docs render them).

    python notebooks/execute_full.py                      # every notebook here
    python notebooks/execute_full.py notebooks/curvature.ipynb

Minutes per notebook on 2 CPU cores. TensorFlow's native log lines, which it writes to
stderr while loading whatever ``TF_CPP_MIN_LOG_LEVEL`` says, are dropped from the stored
outputs; every other output is kept as the kernel printed it.
"""

import os
import pathlib
import sys
import time

import nbformat
from nbclient import NotebookClient

from ctc_newton_cli import NATIVE_LOG_LINE

HERE = pathlib.Path(__file__).resolve().parent


def without_native_logs(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``notebook`` with TensorFlow's native log lines removed from its stderr outputs."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.outputs:
            if output.output_type == "stream" and output.name == "stderr":
                lines = output.text.splitlines(keepends=True)
                output.text = "".join(line for line in lines if not NATIVE_LOG_LINE.match(line))
                if not output.text.strip():
                    continue
            kept.append(output)
        cell.outputs = kept
    return notebook


def execute(path: pathlib.Path) -> float:
    """Executes ``path`` in place at the full budget; returns the seconds it took."""
    notebook = nbformat.read(path, as_version=4)
    os.environ["CTC_NEWTON_NOTEBOOK_BUDGET"] = "full"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    start = time.perf_counter()
    NotebookClient(
        notebook, timeout=3600, resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    nbformat.write(without_native_logs(notebook), path)
    return time.perf_counter() - start


if __name__ == "__main__":
    paths = [pathlib.Path(p) for p in sys.argv[1:]] or sorted(HERE.glob("*.ipynb"))
    for path in paths:
        print(f"{path.name}: {execute(path):.0f} s", flush=True)
