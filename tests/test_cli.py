"""The command line end to end, with a tiny budget."""

import keras
import numpy as np
import pytest

from ctc_newton import cli
from ctc_newton.datasets import load_digit_lines
from ctc_newton.recognizer import decode

TINY = ["--epochs", "1", "--train-size", "48", "--test-size", "16", "--units", "8"]


def test_train_runs_saves_and_the_model_loads_and_decodes(tmp_path, capsys):
    path = str(tmp_path / "model.keras")
    assert cli.main(["train", "--optimizer", "gauss-newton", "--batch-size", "48",
                     "--output", path] + TINY) == 0
    out = capsys.readouterr().out
    assert "epoch   1" in out and "test label error rate" in out and "decoded" in out
    model = keras.models.load_model(path)
    data = load_digit_lines(48, 16)
    decoded = decode(model, data.test.inputs, data.test.input_length)
    assert len(decoded) == 16 and all(all(0 <= d <= 9 for d in row) for row in decoded)
    np.testing.assert_allclose(model.predict(data.test.inputs[:2], verbose=0).shape[-1], 11)


def test_compare_writes_plot_and_table(tmp_path):
    assert cli.main(["compare", "--optimizers", "adam,gauss-newton", "--output-dir",
                     str(tmp_path)] + TINY) == 0
    assert (tmp_path / "compare.png").stat().st_size > 1000
    table = (tmp_path / "compare.md").read_text()
    assert "| adam | 1 |" in table and "| gauss-newton | 1 |" in table


@pytest.mark.parametrize("argv,message", [
    (["train", "--optimizer", "sgd"], "invalid choice"),
    (["train", "--epochs", "0"], "positive integer"),
    (["train", "--output", "model.h5"], "must end with .keras"),
    (["compare", "--optimizers", "adam,rmsprop"], "unknown optimizer"),
])
def test_bad_arguments_get_clear_messages(argv, message, capsys):
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert message in capsys.readouterr().err
