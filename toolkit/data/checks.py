"""Data checks behind `tk check` and the start of `tk run`: duplicates, leakage, label conflicts,
class balance, HTML remnants and characters broken by a wrong decoding (empty texts are left out, and said,
when the data is loaded).
Multi-label data (multi-hot rows) gets per-label counts, rare labels, rows with no label and label
co-occurrence instead of class balance (``toolkit.data.multilabel``); label names that look like lists
or like one name written twice are ``toolkit.data.label_names``'s, the report ``toolkit.data.findings``'s.

Texts are compared by 64-bit hashes in NumPy arrays (``toolkit.data.hashes``), so the full 1.6M-row
Sentiment140 file is checked in seconds without holding a second copy of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import combinations
from os.path import commonprefix

import numpy as np

from toolkit.data.findings import EXAMPLES, CheckReport, Finding, plural
from toolkit.data.hashes import SPACE, text_hashes
from toolkit.data.label_names import list_like_labels, near_duplicate_labels, numbers_beside_words
from toolkit.data.multilabel import label_findings, label_set_keys, label_set_names
from toolkit.data.rows import column, row_numbers, rows_named
from toolkit.data.settings_checks import check_settings_on_data
from toolkit.data.splits import make_splits
from toolkit.errors import TkError, user_message
from toolkit.training.policy import windows_to_check

# A tag starts with its name right after "<" (or "</"), as HTML requires: "M-< and M->" (Emacs keys) is no tag.
# Characters lost to a wrong decoding: U+FFFD itself, its UTF-8 bytes read as Latin-1 ('ï¿½', Sentiment140's), and
# UTF-8 read as Latin-1 or cp1252 ('Ã©' for é, 'â€™' for ’).
BROKEN_CHARACTERS = re.compile("\ufffd|ï¿½|Ã[\u0080-\u00bf]|â€")
HTML_REMNANT = re.compile(r"</?[a-zA-Z][a-zA-Z0-9-]*(?:\s[^<>]*)?/?>|&(?:amp|lt|gt|quot|#\d+);")
SHOWN_UNIT = re.compile(r"</?[a-zA-Z][^<>]{0,200}>|&#?[a-zA-Z0-9]{1,10};")  # a tag or entity: never cut in an example
SHOWN_CHARS = 80  # of an example text
DIFFERENCE_CONTEXT = 20  # characters shown before where two alike examples first differ
IMBALANCE_WARNING = 0.2  # warn when the smallest class is under 20% of the largest
RARE_CLASS_ROWS = 10  # warn about classes with fewer rows than this in a split


def check_splits(splits, dataset_name: str, label_names: tuple[str, ...], classes: bool = True) -> CheckReport:
    """Every check on ``splits``. ``classes``: include the class-presence findings (rare or absent classes);
    tk run makes those on the splits it trains and scores on instead (``class_checks``)."""
    findings: list[Finding] = []
    keys: dict[str, dict[str, np.ndarray]] = {}
    # each column read once, as a whole: iterating a datasets column formats one row at a time (IMDB's
    # 50,000 texts took 5 s of checks that way, most of it spent there)
    columns = {name: split[:] for name, split in splits.items()}
    texts_of = {name: column["text"] for name, column in columns.items()}
    labels_of = {name: np.asarray(column["label"]) for name, column in columns.items()}
    numbers_of = {name: row_numbers(split) for name, split in splits.items()}  # as the user finds the rows
    for name, split in splits.items():
        texts, labels, numbers = texts_of[name], labels_of[name], numbers_of[name]
        findings += _text_quality(name, texts, numbers)
        if classes:
            findings += class_presence(name, labels, label_names)
        found, labels, name_of = _labels(name, labels, label_names)
        findings += found
        keys[name] = {"exact": text_hashes(texts), "normalised": text_hashes(texts, normalised=True)}
        findings += _duplicates(name, keys[name], texts, numbers)
        findings += _conflicts(name, keys[name]["normalised"], labels, name_of, texts, numbers)
    for first, second in combinations(splits.keys(), 2):
        findings += _leakage(first, second, keys, texts_of[second], numbers_of[second])
    multi_label = any(labels.ndim == 2 for labels in labels_of.values())
    findings += list_like_labels(label_names, multi_label)
    findings += near_duplicate_labels(label_names, labels_of.values()) + numbers_beside_words(label_names)
    return CheckReport(dataset_name, {name: len(split) for name, split in splits.items()}, findings)


def _labels(split: str, labels: np.ndarray, label_names: tuple[str, ...]):
    """(label findings, a label id per row, a function naming a row's label): class balance for class ids;
    per-label findings for multi-hot rows, whose label sets become the ids (conflicts compare whole sets)."""
    if labels.ndim == 1:
        return _balance(split, labels, label_names), labels, lambda row: label_names[labels[row]]
    return (label_findings(split, labels, label_names), label_set_keys(labels),
            lambda row: ", ".join(label_set_names(labels[row], label_names)) or "no label")


def class_checks(splits, label_names: tuple[str, ...]) -> list[Finding]:
    """Class presence on the splits tk run trains, validates and tests on (after splitting)."""
    return [finding for name, split in splits.items()
            for finding in class_presence(name, column(split, "label"), label_names)]


def check_as_run(splits, dataset_name: str, label_names: tuple[str, ...], task,
                 count_windows: Callable[[list[str]], int] | None = None) -> CheckReport:
    """tk check: every check on the data as loaded, and class presence on the splits tk run would make
    from it (the task's sizes and seed); where tk run would stop splitting, on the data as loaded, with
    tk run's error (the same ``make_splits``, the same message) as an error finding; likewise where tk run
    would stop on a setting the data refutes (``check_settings_on_data``). ``count_windows``: a long_text =
    "chunks" task's windows of texts, which its batch_size is checked against."""
    report = check_splits(splits, dataset_name, label_names, classes=False)
    try:
        made = make_splits(splits, task)
    except TkError as error:
        carves = "test" not in splits or "validation" not in splits
        report.findings += [finding for name, split in splits.items() for finding in
                            class_presence(name, column(split, "label"), label_names, carved_from=carves and name == "train")]
        report.findings.append(Finding("splits", "error", f"tk run would stop when splitting this data: "
                                                          f"{user_message(error)}"))
        return report
    report.split_rows = {name: len(split) for name, split in made.splits.items()}
    report.split_notes = [*made.notes, *made.advice]
    report.left_out = made.left_out
    report.findings += class_checks(made.splits, label_names)
    try:
        train = made.splits["train"]
        windows = windows_to_check(task, len(train), count_windows and (lambda: count_windows(column(train, "text"))))
        check_settings_on_data(task, label_names, len(train), windows=windows)
    except TkError as error:
        report.findings.append(Finding("settings", "error", f"tk run would stop on this task's settings: "
                                                            f"{user_message(error)}"))
    return report


def _text_quality(split: str, texts, numbers: np.ndarray) -> list[Finding]:
    found = []
    html = [row for row, text in enumerate(texts) if text and HTML_REMNANT.search(text)]
    if html:
        first = HTML_REMNANT.search(texts[html[0]]).group(0)
        found.append(Finding("html", "warning", f"{split}: {len(html):,} texts ({len(html) / len(texts):.1%}) hold "
                             f"HTML remnants such as {first} (the tokenizer sees them as words)", len(html),
                             [f"row {numbers[row]}: {_around_html(texts[row])}" for row in html[:EXAMPLES]]))
    broken = [row for row, text in enumerate(texts) if text and BROKEN_CHARACTERS.search(text)]
    if broken:
        first = BROKEN_CHARACTERS.search(texts[broken[0]]).group(0)
        found.append(Finding("broken_characters", "warning", f"{split}: {len(broken):,} texts "
                             f"({len(broken) / len(texts):.1%}) hold characters broken by a wrong decoding, such as "
                             f"{first!r} (read with another encoding somewhere before tk; the original letters are "
                             "lost to the model)", len(broken),
                             [f"row {numbers[row]}: {_around(texts[row], BROKEN_CHARACTERS)}"
                              for row in broken[:EXAMPLES]]))
    return found


def _balance(split: str, labels: np.ndarray, label_names: tuple[str, ...]) -> list[Finding]:
    """Each class's share; a warning when the smallest class has under a fifth of the largest's rows."""
    counts = np.bincount(labels, minlength=len(label_names))
    summary = ", ".join(f"{name} {n:,} ({n / max(len(labels), 1):.1%})" for name, n in zip(label_names, counts))
    present = counts[counts > 0]  # a class with no rows here is the class-presence finding's, not this one's
    level = "warning" if len(present) and present.min() / present.max() < IMBALANCE_WARNING else "info"
    # "as loaded": the rare-class findings count the rows tk run keeps (after train_size), under the same split name
    message = f"{split}, as loaded: classes {summary}"
    if level == "warning":
        # the counts themselves: with 50 classes, 4 rows against 962 rounded to "0%" at whole percents
        smallest, largest = int(present.min()), int(present.max())
        message += (f"; the smallest class has {smallest:,} {plural(smallest, 'row')}, {smallest / largest:.1%} of the "
                    f"largest's {largest:,} (a warning under {IMBALANCE_WARNING:.0%})")
    return [Finding("class_balance", level, message, int(len(labels)))]


def class_presence(split: str, labels, label_names: tuple[str, ...], carved_from: bool = False) -> list[Finding]:
    """Classes with no rows, or fewer than RARE_CLASS_ROWS, in one split, and what that does to the numbers.

    ``carved_from``: tk run carves validation or test rows from this split (the data as loaded).
    """
    labels = np.asarray(labels)
    if labels.ndim == 2:  # multi-hot rows: label_findings reports rare and absent labels
        return []
    counts = np.bincount(labels.astype(np.int64), minlength=len(label_names))
    found = []
    absent = [name for name, n in zip(label_names, counts) if n == 0]
    if absent:
        them = "it" if len(absent) == 1 else "them"
        found.append(Finding("classes_absent", "warning", f"{split}: no rows of {_classes(absent)} "
                             f"{named(absent)}. The {split} numbers leave {them} out (macro averages "
                             f"run over the classes present; the metrics name {them} under classes_absent)",
                             len(absent)))
    rare = [f"{name} ({n} {plural(n, 'row')})" for name, n in zip(label_names, counts) if 0 < n < RARE_CLASS_ROWS]
    if rare:
        effect = RARE_EFFECT.get(split, RARE_EFFECT[""])
        if carved_from:
            effect += ", and a split carved from this one may miss them (macro averages then leave them out)"
        if len(rare) == 1:
            effect = effect.replace("them", "it").replace("their", "its")
        found.append(Finding("rare_classes", "warning", f"{split}: {len(rare):,} "
                             f"{'class has' if len(rare) == 1 else 'classes have'} fewer than {RARE_CLASS_ROWS} "
                             f"rows: {named(rare, quote=False)}. {effect[0].upper()}{effect[1:]}", len(rare)))
    return found


RARE_EFFECT = {"train": "the model learns them from few examples",
               "validation": "the per-epoch validation numbers, which pick the epoch to keep, hardly measure them",
               "": "their per-class scores have very wide intervals (a recall of 3/3 only says [0.44, 1])"}


NAMES_SHOWN = 10  # a message names this many classes, then counts the rest (metrics.json lists them all)


def named(names: list, quote: bool = True, shown: int = NAMES_SHOWN) -> str:
    """'a', 'b', ... and 40 more: a list of names a console line can hold (each name cut short too)."""
    words = [_short(str(n)) if quote else str(n) for n in names[:shown]]  # _short: quoted and cut short
    return ", ".join(words) + (f" and {len(names) - shown:,} more" if len(names) > shown else "")


def _classes(names: list) -> str:
    return "class" if len(names) == 1 else f"{len(names):,} classes"


def _repeated_groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(group id per row, count per group, ids of groups seen more than once)."""
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return inverse, counts, np.flatnonzero(counts > 1)


def _duplicates(split: str, keys: dict[str, np.ndarray], texts, numbers: np.ndarray) -> list[Finding]:
    """Exact duplicates, then the texts equal only once case and spacing are ignored (not counted twice)."""
    found, counted = [], 0
    for kind in ("exact", "normalised"):
        inverse, counts, repeated = _repeated_groups(keys[kind])
        extra = int((counts[repeated] - 1).sum()) - counted
        if kind == "normalised":  # only the groups whose rows differ in case or spacing
            repeated = [g for g in repeated if len(np.unique(keys["exact"][inverse == g])) > 1]
        if extra <= 0 or not len(repeated):
            continue
        counted += extra
        groups = [np.flatnonzero(inverse == group) for group in repeated[:EXAMPLES]]
        examples = [f"{rows_named(numbers[rows])}: {shown}"
                    for rows, shown in zip(groups, _shorts([texts[int(rows[0])] for rows in groups]))]
        how = "exactly" if kind == "exact" else "once case and spacing are ignored"
        found.append(Finding(f"duplicates_{kind}", "warning",
                             f"{split}: {extra:,} {'more ' if kind != 'exact' else ''}{plural(extra, 'row')} "
                             f"{'repeats' if extra == 1 else 'repeat'} an earlier text {how} ({len(repeated):,} "
                             f"distinct {plural(len(repeated), 'text')} {'appears' if len(repeated) == 1 else 'appear'}"
                             " more than once)", extra, examples))
    return found


def _conflicts(split: str, keys: np.ndarray, labels: np.ndarray, name_of, texts, numbers: np.ndarray) -> list[Finding]:
    """Equal texts with different labels (label ids; multi-label: label-set ids); ``name_of(row)`` names a row's."""
    inverse, counts, repeated = _repeated_groups(keys)
    if not len(repeated):
        return []
    low = np.full(len(counts), np.iinfo(np.int64).max)
    high = np.full(len(counts), -1)
    np.minimum.at(low, inverse, labels)
    np.maximum.at(high, inverse, labels)
    conflicting = np.flatnonzero(low != high)
    if not len(conflicting):
        return []
    groups = [np.flatnonzero(inverse == group) for group in conflicting[:EXAMPLES]]
    # each row with its own label ("rows 12 (neg) and 40 (pos)"), so the file shows which row says what
    examples = [f"{rows_named([f'{numbers[r]} ({name_of(int(r))})' for r in rows])}: {shown}"
                for rows, shown in zip(groups, _shorts([texts[int(rows[0])] for rows in groups]))]
    n = len(conflicting)
    return [Finding("label_conflicts", "warning",
                    f"{split}: {n:,} {plural(n, 'text')} {'appears' if n == 1 else 'appear'} with different labels",
                    len(conflicting), examples)]


def _leakage(first: str, second: str, keys, second_texts, second_numbers: np.ndarray) -> list[Finding]:
    found, counted = [], np.zeros(len(keys[second]["exact"]), dtype=bool)
    for kind in ("exact", "normalised"):
        in_first = np.isin(keys[second][kind], keys[first][kind]) & ~counted  # normalised: those exact missed
        rows = np.flatnonzero(in_first)
        counted |= in_first
        if not len(rows):
            continue
        shared = len(np.unique(keys[second][kind][rows]))
        what = (f"{shared:,} exact {plural(shared, 'text')}" if kind == "exact" else
                f"{shared:,} more {plural(shared, 'text')} once case and spacing are ignored")
        examples = [f"{second} row {second_numbers[row]}: {shown}" for row, shown in
                    zip(rows[:EXAMPLES], _shorts([second_texts[int(row)] for row in rows[:EXAMPLES]]))]
        found.append(Finding(f"leakage_{kind}", "warning",
                             f"{second} and {first} share {what} ({len(rows):,} {second} {plural(len(rows), 'row')}): "
                             f"tk run leaves out of {second} those in the rows it trains or validates on", len(rows),
                             examples))
    return found


def _short(text: str, limit: int = SHOWN_CHARS) -> str:
    text = SPACE.sub(" ", text).strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _shorts(texts: list[str], limit: int = SHOWN_CHARS) -> list[str]:
    """Each example text as ``_short`` shows it; one whose first ``limit`` characters are another example's
    (so the two would look identical) shows its start, then the part from where it differs from the others:
    'Noshit party was great !! Working on a n'...'g in Amsterdam #copy5'."""
    texts = [SPACE.sub(" ", text).strip() for text in texts]
    shown = []
    for text in texts:
        differs = max((len(commonprefix([text, other])) for other in texts if other != text), default=0)
        if differs < limit:
            shown.append(_short(text, limit))
            continue
        start = differs - DIFFERENCE_CONTEXT
        part = text[start:start + limit // 2]
        shown.append(repr(text[:limit // 2]) + "..." + repr(part) + ("..." if start + len(part) < len(text) else ""))
    return shown


def _around(text: str, pattern: re.Pattern, context: int = 30) -> str:
    """The first match of ``pattern`` with up to ``context`` characters either side."""
    match = pattern.search(text)
    start, end = max(0, match.start() - context), min(len(text), match.end() + context)
    return ("..." if start > 0 else "") + repr(text[start:end]) + ("..." if end < len(text) else "")


def _around_html(text: str, context: int = 30) -> str:
    """The first HTML remnant with up to ``context`` characters either side, cut outside any tag or entity
    (never ``&qu``); "..." marks where the text goes on."""
    match = HTML_REMNANT.search(text)
    start, end = max(0, match.start() - context), min(len(text), match.end() + context)
    for unit in SHOWN_UNIT.finditer(text):
        if unit.start() >= end:
            break
        if unit.start() < start < unit.end():  # a tag or entity cut at the start: leave it out
            start = min(unit.end(), match.start())
        if unit.start() < end < unit.end():
            end = max(unit.start(), match.end())
    return ("..." if start > 0 else "") + repr(text[start:end]) + ("..." if end < len(text) else "")


