"""The built wheel: what it contains, and that it installs and runs on its own."""

import pathlib
import re
import subprocess
import sys
import sysconfig
import zipfile

import numpy as np
import pytest

import ctc_newton

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_installs_in_a_fresh_environment_and_trains(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True,
    )
    wheel = next(dist.glob("ctc_newton-*.whl"))
    assert wheel.name.startswith(f"ctc_newton-{ctc_newton.__version__}-")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "ctc_newton/py.typed" in names and "ctc_newton_cli.py" in names
    assert any(re.search(r"\.dist-info/licenses/LICENSE$", name) for name in names)
    assert not any(name.startswith(("tests/", "benchmarks/")) for name in names)

    # A fresh environment that borrows this one's dependencies (no TensorFlow download)
    # but not its editable ctc_newton: the wheel alone must provide the package.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (pathlib.Path(site) / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True)
    command = str(venv / "bin" / "ctc-newton")
    help_text = subprocess.run(
        [command, "--help"], check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout
    assert "train" in help_text
    run = subprocess.run(
        [
            command,
            "train",
            "--epochs",
            "1",
            "--train-size",
            "100",
            "--test-size",
            "20",
            "--output",
            str(tmp_path / "m.keras"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert not re.search(r"^[IWE]0000 |absl::InitializeLog", run.stderr, re.M), run.stderr
    assert (tmp_path / "m.keras").exists()
    from ctc_newton.datasets import load_digit_lines

    np.save(tmp_path / "lines.npy", load_digit_lines(num_train=1, num_test=3).test.inputs)
    lines = subprocess.run(
        [command, "transcribe", str(tmp_path / "m.keras"), str(tmp_path / "lines.npy")],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout.splitlines()
    assert len(lines) == 3 and all(set(line) <= set("0123456789") for line in lines)
    where = subprocess.run(
        [str(python), "-c", "import ctc_newton; print(ctc_newton.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout
    assert str(venv) in where  # the installed copy, not the checkout
