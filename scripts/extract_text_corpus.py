"""Extract the shipped text corpus (docstrings and comments of this Python's standard library).

    python scripts/extract_text_corpus.py [--root STDLIB_DIR]

Writes ``src/diffsample/models/weights/stdlib_text.txt.xz`` and ``stdlib_text.json`` (sha256, Python version,
counts). Run once; the shipped extract, not the local standard library, is what the model was trained on
(:mod:`diffsample.discrete.corpus`).
"""

from __future__ import annotations

import argparse
import json

from diffsample.discrete.corpus import CORPUS_FILE, extract_stdlib, write_corpus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--root", default=None, help="standard-library directory (default: this Python's)")
    parser.add_argument("--out", default=str(CORPUS_FILE), help="where to write the xz extract")
    args = parser.parse_args()
    info = write_corpus(extract_stdlib(args.root), args.out)
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
