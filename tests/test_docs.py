"""Every Python block of the user pages runs, as written, in page order.

A page's blocks share one namespace (a reader runs them one after the
other); `model`, `x` and `y`, which the pages use for "your model and data",
start as lossguard's tiny healthy GloVe seq2seq; `lossguard` is imported.
A block that cannot run here (it needs a file of the reader's project, or a
2 GB download) is marked `<!-- not run: why -->` on the line before it, and
the mark must say why.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
#: The pages written for users (the contributors' pages are backends.md,
#: performance.md and architecture.md).
USER_PAGES = (
    "index.md",
    "get-started.md",
    "why-is-my-loss-negative.md",
    "faults.md",
    "callback.md",
    "losses.md",
    "glove.md",
    "pytest.md",
    "threads.md",
    "reliability.md",
)
_BLOCK = re.compile(
    r"(?:<!-- not run: (?P<why>[^>]*?) -->\n)?```python\n(?P<code>.*?)```", re.S
)


def blocks(page):
    """(code, reason it is not run or None) of each Python block of a page."""
    text = (DOCS / page).read_text()
    return [(m["code"], m["why"]) for m in _BLOCK.finditer(text)]


def test_every_user_page_is_in_the_site_and_not_run_marks_say_why():
    nav = (DOCS.parent / "mkdocs.yml").read_text()
    for page in USER_PAGES:
        assert page in nav, page
        for _, why in blocks(page):
            assert why is None or len(why.split()) >= 3, f"{page}: say why: {why!r}"


@pytest.mark.parametrize(
    "page", [p for p in USER_PAGES if any(why is None for _, why in blocks(p))]
)
def test_the_python_blocks_of_the_page_run(page, tmp_path, monkeypatch):
    import lossguard
    from lossguard.testing import tiny_seq2seq

    monkeypatch.chdir(tmp_path)  # blocks that write files write them here
    model, x, y = tiny_seq2seq(n=32)
    namespace = {"lossguard": lossguard, "model": model, "x": x, "y": y}
    ran = 0
    for i, (code, why) in enumerate(blocks(page)):
        if why is not None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(code, f"{page}, block {i + 1}", "exec"), namespace)  # noqa: S102
        ran += 1
    assert ran
