"""Which columns of a file are the text and the label: found by name (text, review, label, sentiment,
...) or named by the task, renamed to ``text`` / ``label``; several 0/1 label columns (multi-label)
become one column of label-name lists."""

from __future__ import annotations

from pathlib import Path

from toolkit.errors import TkError, suggest

TEXT_COLUMNS = ("text", "review", "sentence", "content", "tweet")
LABEL_COLUMNS = ("label", "labels", "polarity", "sentiment", "target", "class")


class MissingColumn(TkError):
    """A text or label column that is not there. ``role``: "text" or "label"; ``given``: the name asked
    for, or None when none was given and no column has a name tk knows."""

    def __init__(self, message: str, role: str, given: str | None) -> None:
        super().__init__(message)
        self.role, self.given = role, given


def standard_columns(splits, files: dict[str, Path], text_column: str | None = None,
                     label_column: str | None = None, label_columns: list[str] | None = None):
    """Rename the text and label columns to ``text``/``label`` and drop the rest.

    ``label_columns`` (multi-label): several 0/1 columns, one per label, become one ``label`` column holding
    each row's list of the names of the columns that are 1.
    """
    columns = next(iter(splits.values())).column_names
    text = text_column or pick_column(columns, TEXT_COLUMNS)
    if label_columns:
        return _flag_columns(splits, files, text, list(label_columns), columns)
    label = label_column or pick_column(columns, LABEL_COLUMNS)
    for role, name, given, options in (("text", text, text_column, TEXT_COLUMNS),
                                       ("label", label, label_column, LABEL_COLUMNS)):
        if given is not None and given not in columns:
            raise MissingColumn(f"{role}_column = {given!r} is not a column of {files_named(files)}. Columns: "
                                f"{', '.join(columns)}.{suggest(given, columns)}", role, given)
        if name is None:
            raise MissingColumn(f"{files_named(files)}: no {role} column found by name (tk looks for "
                                f"{', '.join(options)}). Columns: {', '.join(columns)}.", role, None)
    if text == label:
        raise MissingColumn(f"{files_named(files)}: column {text!r} cannot be both the text and the label. Columns: "
                            f"{', '.join(columns)}.", "label", label_column)
    splits = splits.select_columns([text, label])
    if (text, label) != ("text", "label"):  # through temporary names: text_column=label, label_column=text swaps
        splits = splits.rename_columns({text: "tk_text", label: "tk_label"})
        splits = splits.rename_columns({"tk_text": "text", "tk_label": "label"})
    return splits


TRUE, FALSE = ("1", "1.0", "true"), ("0", "0.0", "false")


def _flag_columns(splits, files: dict[str, Path], text: str | None, flags: list[str], columns: list[str]):
    """Several 0/1 label columns as one ``label`` column of label-name lists; any other value is an error."""
    missing = [name for name in flags if name not in columns]
    if missing or text is None or text not in columns or text in flags:
        what = (f"no label column '{missing[0]}' (label_columns)" if missing else
                f"the text column '{text}' is also in label_columns" if text in flags else "no text column")
        raise TkError(f"{files_named(files)}: {what}. Found columns: {', '.join(columns)}.")

    def to_names(batch, indices):
        names = [[] for _ in indices]
        for flag in flags:
            for row, value in enumerate(batch[flag]):
                on = _flag(value)
                if on is None:
                    raise TkError(f"{files_named(files)}: label column '{flag}' holds {value!r} (row {indices[row] + 1}); "
                                  "each label column must hold 0 or 1 (or true / false).")
                if on:
                    names[row].append(flag)
        return {"label": names}

    splits = splits.select_columns([text, *flags])
    splits = splits.map(to_names, batched=True, with_indices=True, remove_columns=flags)
    return splits.rename_column(text, "text") if text != "text" else splits


def _flag(value) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE + FALSE:
        return value.strip().lower() in TRUE
    return None


def pick_column(columns: list[str], options: tuple[str, ...]) -> str | None:
    lowered = {c.lower(): c for c in columns}
    return next((lowered[o] for o in options if o in lowered), None)


def files_named(files: dict[str, Path]) -> str:
    return ", ".join(str(p) for p in files.values())
