"""The `lossguard` command, run as a user runs it."""

import json
import subprocess
import sys

import pandas as pd
import pytest

import lossguard


def run(*args, cwd=None):
    """`lossguard ARGS`: the console script's module, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "lossguard_cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def test_version_and_help():
    version = run("--version")
    assert lossguard.__version__ in version.stdout
    assert "oneDNN" not in version.stderr and "absl" not in version.stderr
    assert "demo" in run("--help").stdout


@pytest.mark.backends
def test_demo_explains_broken_run_and_trains_fixed_one(tmp_path):
    out = tmp_path / "demo"
    result = run("demo", "--out", str(out), "--epochs", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    assert "NEGATIVE_LABELS" in text and "First thing to fix" in text
    broken = pd.read_csv(out / "broken_history.csv")
    fixed = pd.read_csv(out / "fixed_history.csv")
    # action="stop": Keras stops right after the batch it was found on (on
    # JAX and PyTorch, whose batch hooks run a step behind, one batch later).
    assert "(found at epoch 0, step 0)" in text
    assert 1 <= len(broken) <= 2
    assert f"last batch loss {broken.loss.iloc[-1]:.4f}" in text
    assert (fixed.loss >= 0).all()
    assert fixed.groupby("epoch").loss.mean().is_monotonic_decreasing
    assert "findings: 0 error/warning" in text
    assert (out / "loss.png").stat().st_size > 10_000


def _saved_model(tmp_path):
    from tests.helpers import seq2seq

    model = seq2seq()
    model.compile("adam", "categorical_crossentropy")
    path = tmp_path / "model.keras"
    model.save(path)
    return path


def test_diagnose_command_names_the_fault_and_exits_1(tmp_path):
    import numpy as np

    from tests.helpers import onehot, token_data

    model = _saved_model(tmp_path)
    x, ids = token_data(n=16)
    y = onehot(ids)
    y[:, -1, :] = -1.0  # a -1 padding row in the targets
    data = tmp_path / "data.npz"
    np.savez(data, x=x, y=y)
    result = run("diagnose", str(model), str(data))
    assert result.returncode == 1, result.stderr[-2000:]
    assert "NEGATIVE_LABELS" in result.stdout
    assert "First thing to fix" in result.stdout
    # lossguard's output, not TensorFlow's start-up lines.
    for noise in ("oneDNN", "absl::InitializeLog", "cuda"):
        assert noise not in result.stdout + result.stderr


def test_diagnose_command_healthy_data_and_bad_files(tmp_path, capsys):
    import numpy as np

    from lossguard.cli import main
    from tests.helpers import onehot, token_data

    model = _saved_model(tmp_path)
    x, ids = token_data(n=16)
    healthy = tmp_path / "healthy.npz"
    np.savez(healthy, x0=x, y=onehot(ids))
    assert main(["diagnose", str(model), str(healthy)]) == 0
    assert "no findings" in capsys.readouterr().out
    assert main(["diagnose", str(model), str(healthy), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "root_causes": [],
        "findings": [],
        "notes": [],
    }

    unnamed = tmp_path / "unnamed.npz"
    np.savez(unnamed, x, onehot(ids))  # arr_0, arr_1
    assert main(["diagnose", str(model), str(unnamed)]) == 2
    err = capsys.readouterr().err
    assert "arr_0" in err and "np.savez(path, x=x, y=y)" in err

    assert main(["diagnose", str(model), str(tmp_path / "missing.npz")]) == 2
    assert "no such file" in capsys.readouterr().err

    short = tmp_path / "short.npz"
    np.savez(short, x=x, y=onehot(ids)[:8])
    assert main(["diagnose", str(model), str(short)]) == 2
    assert "`x` has 16 samples but `y` has 8" in capsys.readouterr().err


def test_plot_command_from_a_real_log(tmp_path, capsys):
    import numpy as np

    from lossguard.cli import main
    from tests.helpers import onehot, seq2seq, token_data

    x, ids = token_data()
    y = onehot(ids)
    y[20:30, -1] = -1.0  # one bad batch of four
    model = seq2seq()
    model.compile("adam", "categorical_crossentropy")
    log = tmp_path / "history.csv"
    cb = lossguard.LossSanityCallback(action="record", log_path=log)
    model.fit(x, y, batch_size=10, shuffle=False, verbose=0, callbacks=[cb])
    saved = pd.read_csv(log)
    assert saved.findings.fillna("").str.contains("NEGATIVE_LABELS").tolist() == [
        False,
        False,
        True,
        False,
    ]
    png = tmp_path / "loss.png"
    assert main(["plot", str(log), "-o", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 20_000

    assert main(["plot", str(tmp_path / "nope.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
    other = tmp_path / "other.csv"
    pd.DataFrame({"a": np.arange(3)}).to_csv(other, index=False)
    assert main(["plot", str(other), "-o", str(png)]) == 2
    assert "no 'loss' column" in capsys.readouterr().err


# --------------------------------------- the console script, as a user runs it
def script(*args, cwd=None):
    """The installed `lossguard` console script, in a fresh process."""
    from pathlib import Path

    command = Path(sys.executable).with_name("lossguard")
    return subprocess.run(
        [str(command), *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def assert_user_error(result, *words):
    """Exit code 2, one line on stderr naming the problem, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_user_errors_are_one_line_and_exit_2(tmp_path):
    model = _saved_model(tmp_path)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    assert_user_error(
        script("diagnose", str(model), str(corrupt)),
        str(corrupt),
        "not a readable .npz file",
    )
    import numpy as np

    good = tmp_path / "data.npz"
    np.savez(good, x=np.zeros((4, 5), "int32"), y=np.zeros((4, 5, 24), "float32"))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    assert_user_error(
        script("diagnose", str(model), str(truncated)), "not a readable .npz file"
    )
    not_a_model = tmp_path / "model.keras"
    not_a_model.write_text("hello")
    assert_user_error(
        script("diagnose", str(not_a_model), str(good)),
        "cannot load the model",
        "not a Keras model archive",
    )
    log = tmp_path / "history.csv"
    log.write_text("epoch,step,phase,loss\n0,0,train,1.0\n0,1,train,0.5\n")
    assert_user_error(
        script("plot", str(log), "-o", str(tmp_path / "no" / "dir" / "x.png")),
        "x.png",
        "does not exist",
    )
    assert_user_error(script("plot", str(tmp_path / "nope.csv")), "no such file")
    assert_user_error(script("explain", "NOT_A_CODE"), "no fault code 'NOT_A_CODE'")
    assert_user_error(script("frobnicate"), "invalid choice")
    assert_user_error(script("diagnose", "--batches", "many", "a", "b"), "--batches")


def test_explain_prints_a_codes_section_offline():
    listing = script("explain")
    assert listing.returncode == 0
    from lossguard.diagnosis.registry import FAULTS

    for code in FAULTS:
        assert code in listing.stdout
    section = script("explain", "negative_labels")
    assert section.returncode == 0
    text = section.stdout
    assert text.startswith("NEGATIVE_LABELS\n")
    for part in ("Severity: error", "Mechanism.", "Evidence.", "Fix.", "Reproduce."):
        assert part in text


def test_fast_answers_import_no_tensorflow():
    """--help, --version, explain and a bad argument never import Keras (the
    speed itself is measured in benchmarks/bench_cli.py)."""
    code = (
        "import sys, lossguard_cli\n"
        "for argv in (['--version'], ['--help'], ['explain'], ['nope']):\n"
        "    try:\n"
        "        lossguard_cli.main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('KERAS', 'keras' in sys.modules, 'tensorflow' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert "KERAS False False" in done.stdout, done.stdout + done.stderr
