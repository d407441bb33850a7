"""Checks on the label names themselves: names that look like unsplit lists ('HUM|person'), and one
name written two ways ('Bug' and 'bug ', 'pyhton' beside 'python', codes beside words: '0' and 'ham')."""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from itertools import combinations

import numpy as np

from toolkit.data.findings import EXAMPLES, Finding, plural

LIST_SEPARATORS = (",", "|", ";")
SIMILAR_NAMES = 0.8  # difflib's ratio at which two label names look like one name misspelt ('pyhton', 'python')
MAX_NAMES_COMPARED = 500  # every pair is compared: O(labels²)
RARE_SHARE = 10  # names alike but not equal count only when one has at most a tenth of the other's rows


def near_duplicate_labels(label_names: tuple[str, ...], labels_of) -> list[Finding]:
    """Label names that are one name written two ways: equal but for case, spaces and punctuation ('Bug',
    'bug '), or alike (difflib ratio SIMILAR_NAMES) with one at most a tenth as common ('pyhton' beside 'python';
    'NUM:count' and 'NUM:code', both common, are two classes). One finding naming each pair with its rows."""
    if not 2 <= len(label_names) <= MAX_NAMES_COMPARED:
        return []
    counts = np.zeros(len(label_names), dtype=np.int64)
    for labels in labels_of:
        labels = np.asarray(labels)
        counts += (labels.sum(axis=0).astype(np.int64)[:len(label_names)] if labels.ndim == 2 else
                   np.bincount(labels.astype(np.int64), minlength=len(label_names))[:len(label_names)])
    folded = [re.sub(r"[\W_]+", "", str(name).casefold()) for name in label_names]
    pairs = []
    for i, j in combinations(range(len(label_names)), 2):
        a, b = folded[i], folded[j]
        rare, common = (i, j) if counts[i] <= counts[j] else (j, i)
        lopsided = counts[rare] * RARE_SHARE <= counts[common]  # a typo is rare beside the name it misspells
        if a == b or (lopsided and min(len(a), len(b)) >= 4 and SequenceMatcher(None, a, b).ratio() >= SIMILAR_NAMES):
            pairs.append((rare, common))
    if not pairs:
        return []
    shown = "; ".join(f"'{label_names[r]}' ({counts[r]:,} {plural(int(counts[r]), 'row')}) beside "
                      f"'{label_names[c]}' ({counts[c]:,})" for r, c in pairs[:EXAMPLES])
    more = f" and {len(pairs) - EXAMPLES:,} more" if len(pairs) > EXAMPLES else ""
    return [Finding("similar_labels", "warning", f"{len(pairs):,} pair(s) of label names look like one name written "
                    f"two ways: {shown}{more}. If they are one class, correct the rarer in the data (or map it onto "
                    "the other) before training; two names split its rows and its scores.", len(pairs))]


def numbers_beside_words(label_names: tuple[str, ...]) -> list[Finding]:
    """Some label names are whole numbers and others words ('0', '1' beside 'ham', 'spam'): one file's classes
    written as codes in some rows and as names in others, which tk would train as that many classes."""
    numbers = [name for name in label_names if re.fullmatch(r"\s*[-+]?\d+\s*", str(name))]
    words = [name for name in label_names if name not in numbers]
    if not numbers or not words:
        return []
    shown = ", ".join(repr(name) for name in numbers[:EXAMPLES])
    named = ", ".join(repr(name) for name in words[:EXAMPLES])
    return [Finding("similar_labels", "warning", f"label names mix whole numbers ({shown}) and words ({named}): if the "
                    "numbers are codes for the words, the same classes are written two ways and tk would train "
                    f"{len(label_names):,} classes. Write each class one way in the data before training.",
                    len(numbers))]


def list_like_labels(label_names: tuple[str, ...], multi_label: bool) -> list[Finding]:
    """Label names that look like unsplit lists ('HUM|person'): a multi-label file read as single-label, or
    split with the wrong label_separator: at least two labels, and half of them or more, hold the same
    separator (one class name with a comma is no evidence)."""
    for separator in LIST_SEPARATORS:
        holding = [name for name in label_names if separator in name]
        if len(holding) < 2 or len(holding) * 2 < len(label_names):
            continue
        examples = ", ".join(repr(name) for name in holding[:3])
        fix = (f'set label_separator = "{separator}"' if multi_label else
               f'set problem = "multi-label" and label_separator = "{separator}"')
        return [Finding("label_lists", "warning", f"{len(holding):,} of {len(label_names):,} labels contain "
                        f"'{separator}' ({examples}): if a cell lists several labels, {fix} "
                        "(docs/multi-label.md)", len(holding))]
    return []
