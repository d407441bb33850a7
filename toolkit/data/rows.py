"""Rows as a user finds them: each row's number in the file it was read from (kept when rows are left
out, and named: "rows 3, 9 and 12"), and whole columns read at once, never row by row."""

from __future__ import annotations

ROW = "tk_row"  # each row's number in the file or Hub split it was read from: from 1, a header line not counted


def number_rows(split):
    """``split`` with the ``ROW`` column, numbering its rows as read, so the rows left out later (no label,
    an empty text, a text also in training) keep the numbers a user finds them by. Added only to rows as read:
    numbering a plugin's filtered or shuffled rows would copy them all (``datasets`` flattens its index first)."""
    import datasets
    import numpy as np

    if not isinstance(split, datasets.Dataset) or ROW in split.column_names or split._indices is not None:
        return split
    return split.add_column(ROW, np.arange(1, len(split) + 1))


def column(split, name: str):
    """A split's column, read at once (a list; an array or tensor under a numpy or torch format).

    ``split[name]`` is a datasets ``Column``: iterating it, or ``np.asarray`` on it, reads row by row
    (1.6M labels: 16.6 s), where a slice reads the column in one go (0.05 s).
    """
    return split[name][:]


def row_numbers(split):
    """Each row's number as a user finds it (``ROW``), or where the rows were not numbered as read, its position
    in ``split`` from 1: what tk check, tk run and their errors call "row N"."""
    import numpy as np

    if ROW in split.column_names:
        return np.asarray(column(split, ROW))
    return np.arange(1, len(split) + 1)


def rows_named(numbers, shown: int = 4) -> str:
    """"row 7", "rows 3, 9 and 12" or "rows 3, 9, 12, 40 and 5 more": row numbers as the user finds them
    in the file (``row_numbers``)."""
    numbers = [str(n) for n in numbers]
    if len(numbers) == 1:
        return f"row {numbers[0]}"
    if len(numbers) <= shown:
        return f"rows {', '.join(numbers[:-1])} and {numbers[-1]}"
    return f"rows {', '.join(numbers[:shown])} and {len(numbers) - shown:,} more"
