"""The step ledger (`lossguard/callbacks/ledger.py`): which steps ran, which
rows are new, when a block is due, and how rows are numbered.

The ledger is plain Python, so it is loaded here by its path, without the
package's `__init__` (which imports Keras and TensorFlow): these tests run
in a fraction of a second on any backend, and one of them holds the module
to that.
"""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.backends

LEDGER = Path(__file__).resolve().parents[2] / "lossguard" / "callbacks" / "ledger.py"

LOAD_ALONE = f"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("ledger_alone", {str(LEDGER)!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
ledger = module.StepLedger(4)
ledger.start(fit=True)
ledger.count("train", {{"loss": 1.0}}, 1, 1.0)
heavy = [name for name in ("tensorflow", "keras") if name in sys.modules]
print(json.dumps({{"heavy": heavy, "pending": ledger.pending}}))
"""


def _load_ledger():
    spec = importlib.util.spec_from_file_location("lossguard_ledger_alone", LEDGER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ledger_module = _load_ledger()
StepLedger = ledger_module.StepLedger
READ_EVERY_S = ledger_module.READ_EVERY_S


def started(check_every="auto", fit=True):
    ledger = StepLedger(check_every)
    ledger.start(fit=fit)
    return ledger


def test_the_ledger_loads_alone_without_keras_or_tensorflow():
    result = subprocess.run(
        [sys.executable, "-c", LOAD_ALONE],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"heavy": [], "pending": 1}


# ------------------------------------------------------------------ a new run
def test_start_resets_the_run_while_seen_and_train_rows_go_on():
    ledger = started(check_every=3)
    for _ in range(3):
        ledger.hooks["train"] += 1
        ledger.count("train", {"loss": 0.5}, 1, 0.5)
    ledger.read(1, 3)
    ledger.number("train", 3)
    ledger.go_blind("validation", "no compute_loss")
    ledger.begun["train"] = 2
    ledger.count("validation", {"loss": 0.7}, 1, 0.7)

    ledger.start(fit=False)  # model.evaluate after the fit

    assert ledger.epoch is None  # evaluate: no epoch
    assert ledger.rows == ledger.hooks == {"train": 0, "validation": 0}
    assert ledger.pending == ledger.unread == 0 and ledger.open_phase is None
    assert ledger.running == {"train": [], "validation": []}
    assert ledger.last_logs == {"train": {}, "validation": {}}
    assert ledger.blind == {} and ledger.begun == {"train": None, "validation": None}
    assert ledger.every == 3
    # The buffer keeps numbering its steps and the history its global steps.
    assert ledger.seen == 3 and ledger.expected == 3 and ledger.train_rows == 3
    ledger.start(fit=True)
    assert ledger.epoch == 0
    steps, global_steps = ledger.number("train", 2)
    assert steps.tolist() == [0, 1] and global_steps.tolist() == [3, 4]


def test_a_new_history_numbers_global_steps_from_zero_again():
    ledger = started()
    ledger.number("train", 5)
    ledger.new_history()
    assert ledger.number("train", 1)[1].tolist() == [0]


# ------------------------------------------------------------- when to read
def test_check_every_n_makes_a_block_due_every_n_steps():
    ledger = started(check_every=3)
    due = [ledger.count("train", {}, 1, 0.5) for _ in range(3)]
    assert due == [False, False, True]
    assert ledger.take_pending(at_end=False) == 3 and ledger.pending == 0
    assert ledger.count("train", {}, 1, 0.5) is False  # counting starts over
    # steps_per_execution=4: one hook counts four steps at once
    assert ledger.count("train", {}, 4, 0.5) is True
    assert ledger.expected == 8  # every step the hooks accounted for


def test_a_hook_without_a_running_loss_counts_but_never_reads():
    """Where the step writes the running loss itself (the hooks lag), the
    end hooks only count: the begin hooks read."""
    ledger = started(check_every=1)
    assert ledger.count("train", {"loss": 0.5}, 1, None) is False
    assert ledger.pending == 1 and ledger.expected == 1
    assert ledger.running["train"] == []
    assert ledger.last_logs["train"] == {"loss": 0.5}


def test_auto_reads_after_the_first_step_then_about_every_half_second():
    ledger = started("auto")
    assert ledger.count("train", {}, 1, 0.5) is True  # the first read is at once
    ledger.adapt(1, now=10.0, limit=512)  # the first read only sets the clock
    assert ledger.every == 1
    ledger.adapt(8, now=10.125, limit=512)  # 1/64 s a step
    assert ledger.every == int(READ_EVERY_S * 64)
    ledger.adapt(8, now=10.125 + 8 * 2.0, limit=512)  # slow steps: every step
    assert ledger.every == 1
    ledger.adapt(8, now=26.125, limit=40)  # no time at all: at most the limit
    assert ledger.every == 40
    ledger.adapt(0, now=99.0, limit=512)  # a read of no rows measures nothing
    assert ledger.every == 40


def test_a_new_run_does_not_measure_the_time_between_runs():
    ledger = started("auto")
    ledger.adapt(8, now=1.0, limit=512)
    ledger.adapt(8, now=1.125, limit=512)
    assert ledger.every > 1
    ledger.start(fit=True)
    assert ledger.every == 1 and ledger.last_read is None
    ledger.adapt(8, now=500.0, limit=512)  # minutes later: not a slow step
    assert ledger.every == 1 and ledger.last_read == 500.0


def test_a_fixed_check_every_is_not_adapted():
    ledger = started(check_every=5)
    ledger.adapt(8, now=1.0, limit=512)
    ledger.adapt(8, now=1.125, limit=512)
    assert ledger.every == 5


# ------------------------------------------------------------- which rows
def test_fresh_takes_the_unread_rows_in_step_order():
    # A buffer of 4 after 6 steps holds steps 5, 6, 3, 4; slot 3 of a fresh
    # buffer (step 0) was never written.
    ledger = started()
    ledger.seen = 2
    steps = np.array([5, 6, 3, 4])
    assert ledger.fresh(steps, middle=False, carried=False).tolist() == [2, 3, 0, 1]
    ledger.seen = 4
    assert ledger.fresh(steps, middle=False, carried=False).tolist() == [0, 1]
    empty = started()
    assert empty.fresh(np.array([1, 2, 0, 0]), False, False).tolist() == [0, 1]


def test_in_the_middle_of_a_phase_only_the_steps_the_hooks_counted_are_new():
    ledger = started(check_every=2)
    ledger.count("train", {}, 1, 0.5)
    ledger.count("train", {}, 1, 0.5)  # the hooks account for steps 1 and 2
    steps = np.array([1, 2, 3, 0])  # step 3 already wrote its row (a thread)
    assert ledger.fresh(steps, middle=True, carried=False).tolist() == [0, 1]
    # A begin hook counted the steps itself, and an end of phase takes all.
    assert ledger.fresh(steps, middle=True, carried=True).tolist() == [0, 1, 2]
    assert ledger.fresh(steps, middle=False, carried=False).tolist() == [0, 1, 2]


def test_read_reports_the_steps_lost_when_more_ran_than_the_buffer_holds():
    ledger = started(check_every=100)
    assert ledger.read(1, 3) == 0
    assert ledger.seen == 3 and ledger.expected == 3
    # Steps 4..13 ran before the next read; a buffer of 4 holds 10..13.
    assert ledger.read(10, 13) == 6
    assert ledger.seen == 13 and ledger.expected == 13


# -------------------------------------------------------------- numbering
def test_number_counts_steps_per_phase_and_global_steps_in_training_rows():
    ledger = started()
    steps, global_steps = ledger.number("train", 3)
    assert steps.tolist() == [0, 1, 2] and global_steps.tolist() == [0, 1, 2]
    # Validation rows sit at the training step they follow.
    steps, global_steps = ledger.number("validation", 2)
    assert steps.tolist() == [0, 1] and global_steps.tolist() == [3, 3]
    steps, global_steps = ledger.number("train", 2)
    assert steps.tolist() == [3, 4] and global_steps.tolist() == [3, 4]
    ledger.epoch_begins(1)
    ledger.validation_begins()
    assert ledger.epoch == 1
    assert ledger.number("train", 1)[0].tolist() == [0]
    assert ledger.number("validation", 1)[0].tolist() == [0]
    assert ledger.train_rows == 6


# ------------------------------------------------ hooks that lag the steps
def test_begin_hooks_count_the_step_the_previous_begin_opened():
    ledger = started(check_every=3)
    assert ledger.begin("train", 1) == 0  # opens step 1: nothing ran yet
    assert ledger.begin("train", 1) == 0  # step 1 ran
    assert ledger.begin("train", 1) == 0  # step 2 ran
    assert ledger.begin("train", 1) == 3  # step 3 ran: a block is due
    assert ledger.unread == 0
    assert ledger.begin("train", 4) == 4  # a call of 4 steps ran: due at once
    assert ledger.begin("train", 1) == 0 and ledger.unread == 1
    # A new phase's first begin does not count the step the other opened.
    ledger.validation_begins()
    assert ledger.begin("validation", 1) == 0 and ledger.unread == 1
    ledger.take_pending(at_end=True)  # the end of a phase reads every row
    assert ledger.unread == 0
    ledger.epoch_begins(1)
    assert ledger.begin("train", 1) == 0 and ledger.unread == 0


def test_go_blind_owes_a_row_for_each_hook_that_ran_without_one():
    ledger = started()
    ledger.hooks["train"] = 5
    ledger.number("train", 2)
    assert ledger.go_blind("train", "it overrides train_step") == 3
    assert ledger.blind == {"train": "it overrides train_step"}


# ----------------------------------------------------- Keras' running loss
def test_running_column_puts_each_hooks_running_loss_on_its_last_row():
    ledger = started(check_every=3)
    for value in (0.9, 0.8, 0.7):
        ledger.count("train", {}, 1, value)
    column = ledger.running_column("train", 3, 1)
    np.testing.assert_allclose(column, [0.9, 0.8, 0.7])
    assert column.dtype == np.float32
    assert ledger.running["train"] == []  # taken
    # steps_per_execution=4: one value per call, on the call's last step.
    ledger.count("train", {}, 4, 0.6)
    ledger.count("train", {}, 4, 0.5)
    column = ledger.running_column("train", 8, 4)
    np.testing.assert_array_equal(np.isnan(column), [1, 1, 1, 0, 1, 1, 1, 0])
    np.testing.assert_allclose(column[[3, 7]], [0.6, 0.5])


def test_a_block_that_starts_after_a_read_mid_call_keeps_the_latest_values():
    """A block of fewer rows than hooks (the first rows were lost or read
    already) gets the latest values, the last on its last row."""
    ledger = started(check_every=1)
    for value in (0.9, 0.8, 0.7):
        ledger.count("train", {}, 1, value)
    column = ledger.running_column("train", 2, 1)
    np.testing.assert_allclose(column, [0.8, 0.7])


def test_a_partial_last_call_keeps_each_hooks_running_loss_on_its_own_row():
    # steps_per_execution=4 and 6 batches an epoch: Keras' hooks come after
    # steps 4 (running mean 0.6) and 6 (0.5); the epoch's end reads both.
    ledger = started(check_every=8)
    ledger.count("train", {}, 4, 0.6)
    ledger.count("train", {}, 4, 0.5)  # the reader counts steps_per_call
    column = ledger.running_column("train", 6, 4)
    assert column[3] == pytest.approx(0.6) and column[5] == pytest.approx(0.5)


def test_logged_loss_reads_keras_logs_as_a_float():
    logged_loss = ledger_module.logged_loss
    assert logged_loss({"loss": 0.25}) == 0.25
    assert logged_loss({"loss": np.float32(0.5)}) == 0.5
    assert math.isnan(logged_loss({})) and math.isnan(logged_loss(None))
    assert math.isnan(logged_loss({"loss": "n/a"}))
