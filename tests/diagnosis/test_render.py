"""Reports and findings in a notebook (`_repr_html_`), checked by rendering
the HTML and reading it back, not by eye."""

import base64
import html.parser

import pandas as pd
import pytest

from lossguard.diagnosis.causes import link
from lossguard.diagnosis.findings import Finding, Report


class Page(html.parser.HTMLParser):
    """The text of the page, its bold runs in order, and its images."""

    def __init__(self, markup):
        super().__init__()
        self.text, self.bold, self.images, self._in_b = [], [], [], False
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        if tag == "b":
            self._in_b = True
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if tag == "b":
            self._in_b = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_b:
            self.bold.append(data)


def cause_and_consequence():
    cause = Finding(
        "SINGLE_UNIT_CATEGORICAL",
        "error",
        "1 unit <out>",
        "why",
        "use a sigmoid",
        {"output": "out", "units": 1},
    )
    empty = Finding(
        "EMPTY_LABEL_ROWS",
        "warning",
        "59.4% of rows are all zero",
        "w",
        "mask",
        {"output": "out", "empty_row_share": 0.594},
        epoch=0,
        step=0,
        phase="train",
    )
    return link([empty, cause])


def test_a_report_renders_root_causes_first_with_the_numbers_and_the_fix():
    page = Page(Report(cause_and_consequence())._repr_html_())
    codes = [b for b in page.bold if b.isupper()]
    assert codes == ["SINGLE_UNIT_CATEGORICAL", "EMPTY_LABEL_ROWS"]
    text = "".join(page.text)
    assert "lossguard found 1 root cause(s) and 1 finding(s)" in text
    assert "1 unit <out>" in text  # escaped, shown as text
    assert "follows from SINGLE_UNIT_CATEGORICAL" in text
    assert "0.594" in text and "use a sigmoid" in text
    assert text.count("Fix:") == 1  # the consequence's fix is its cause's
    assert page.images == []  # diagnose's report has no history to draw


def test_a_callbacks_report_draws_its_history_inline():
    pytest.importorskip("matplotlib")
    history = pd.DataFrame(
        {
            "phase": ["train"] * 6 + ["validation"] * 2,
            "global_step": [0, 1, 2, 3, 4, 5, 6, 6],
            "loss": [2.0, 1.8, 1.7, 1.5, 1.4, 1.3, -3.0, -2.0],
            "findings": [""] * 6 + ["NEGATIVE_LABELS", ""],
        }
    )
    report = Report(cause_and_consequence(), history=lambda: history)
    (image,) = Page(report._repr_html_()).images
    assert image.startswith("data:image/png;base64,")
    png = base64.b64decode(image.split(",", 1)[1])
    assert png[:4] == b"\x89PNG" and len(png) > 10_000


def test_a_finding_renders_alone():
    (cause, _) = cause_and_consequence()
    page = Page(cause._repr_html_())
    assert page.bold == ["SINGLE_UNIT_CATEGORICAL", "Why:", "Fix:"]
    assert "use a sigmoid" in "".join(page.text)


def test_a_fitted_callbacks_report_carries_its_history():
    pytest.importorskip("matplotlib")
    import keras
    import numpy as np

    import lossguard
    from tests.helpers import classifier

    model = classifier(units=1, activation="sigmoid")
    model.compile("adam", "categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    cb = lossguard.LossSanityCallback(action="record")
    keras.utils.set_random_seed(0)
    model.fit(x, (x[:, :1] > 0).astype("float32"), verbose=0, callbacks=[cb])
    assert len(cb.report.history) == 1
    assert len(Page(cb.report._repr_html_()).images) == 1
