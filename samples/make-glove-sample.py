#!/usr/bin/env python3
"""Builds samples/glove-10k.safetensors, the sample checkpoint of `make demo`.

Source: GloVe 6B 100-d word vectors (Pennington, Socher, Manning, "GloVe: Global
Vectors for Word Representation", EMNLP 2014; https://nlp.stanford.edu/projects/glove/),
public domain (Open Data Commons PDDL), as ../shared/data/glove/glove100d_top20k.npy:
the 20,000 most frequent words in frequency order. The sample keeps the first 10,000
rows (F32 [10000, 100], 4 MB) under the tensor name `word_embeddings.weight`, and
the vocabulary of those rows as samples/glove-10k.vocab.txt (row i = line i).

Run from the project root: python3 samples/make-glove-sample.py
Needs numpy only; the safetensors file is written by hand (the format is an
8-byte header length, a JSON header, and the raw little-endian data).
"""
import json
import struct
import sys

import numpy as np

ROWS = 10000
src = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/glove/glove100d_top20k.npy"
w = np.load(src, mmap_mode="r")[:ROWS].astype("<f4")
header = {
    "__metadata__": {
        "source": "GloVe 6B 100d (Pennington et al. 2014), 10,000 most frequent words; public domain (PDDL)",
        "vocab": "glove-10k.vocab.txt",
    },
    "word_embeddings.weight": {"dtype": "F32", "shape": list(w.shape), "data_offsets": [0, w.nbytes]},
}
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
with open("samples/glove-10k.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)))
    f.write(h)
    f.write(np.ascontiguousarray(w).tobytes())
with open(src.replace(".npy", ".vocab.txt")) as f, open("samples/glove-10k.vocab.txt", "w") as g:
    for i, line in zip(range(ROWS), f):
        g.write(line)
