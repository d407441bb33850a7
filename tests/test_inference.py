"""Batched prediction: padding from token lists or from Arrow."""

import numpy as np
import pyarrow as pa

from toolkit.evaluation.inference import TokenRows

ROWS = [[2, 7, 8, 3], [2, 3], [2, 5, 6, 7, 8, 9, 3]]  # ids inside the tiny test vocabulary


def test_token_rows_pad_the_same_from_lists_and_from_arrow():
    chunked = pa.chunked_array([pa.array(ROWS[:1]), pa.array(ROWS[1:])])
    for tokens in (TokenRows(ROWS), TokenRows(chunked)):
        ids, mask = tokens.batch(np.array([2, 0]), pad=0)
        assert ids.tolist() == [ROWS[2], ROWS[0] + [0, 0, 0]]
        assert mask.tolist() == [[1] * 7, [1] * 4 + [0] * 3]
        assert tokens.lengths.tolist() == [4, 2, 7]
