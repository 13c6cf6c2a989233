"""The documentation site builds with --strict: every API reference resolves, every
docstring parses and every internal link points somewhere."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_site_builds_strictly(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    site = tmp_path / "site"
    assert (site / "api" / "optimizers" / "index.html").exists()
    # The benchmark results and the notebooks are served from where they live,
    # the notebooks with their stored outputs (plots included).
    for plot in (ROOT / "benchmarks" / "results").rglob("*.png"):
        assert (site / plot.relative_to(ROOT)).exists(), plot
    for notebook in (ROOT / "notebooks").glob("*.ipynb"):
        page = (site / "notebooks" / notebook.stem / "index.html").read_text()
        assert "data:image/png;base64" in page, f"{notebook.name} is stored without its plots"
