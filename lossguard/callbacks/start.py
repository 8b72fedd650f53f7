"""The checks a run starts with: the compile configuration and the model.

They run when `fit` (or `evaluate`) starts, and once more when the first
batch has told what the outputs are (a subclassed model is built on its
first call). Their codes are then known, so a block's checks do not report
them again.
"""

from __future__ import annotations

from lossguard.diagnosis.faults import check_start


class StartChecks:
    """Runs the configuration checks once per set of output specs.

    Args:
        vocabulary, vectors: The tokenizer's words and the pre-trained
            vectors the embeddings are checked against, or None.
        warn: Says something to the user once.
    """

    def __init__(self, vocabulary, vectors, warn):
        self.vocabulary = vocabulary
        self.vectors = vectors
        self.warn = warn
        self.checked = None  # the specs last checked
        self.known = frozenset()  # the codes they showed

    def reset(self) -> None:
        """A new run: check again."""
        self.checked = None

    def run(self, model, specs) -> list:
        """The findings of the configuration for `specs` (none where these
        specs were checked already)."""
        if self.checked is specs:
            return []
        self.checked = specs
        try:
            found = check_start(model, specs, self.vocabulary, self.vectors)
        except ValueError as error:  # vocabulary/vectors that do not fit
            self.warn(
                f"lossguard could not check the embeddings against the given "
                f"vocabulary and vectors ({error}); it checks the rest."
            )
            self.vocabulary = self.vectors = None
            found = check_start(model, specs)
        self.known = frozenset(f.code for f in found)
        return found
