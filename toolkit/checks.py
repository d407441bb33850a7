"""Data checks behind `tk check` and the start of `tk run`: duplicates, leakage, label conflicts,
class balance, empty texts and HTML remnants."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any

HTML_TAG = re.compile(r"<\s*/?\s*[a-zA-Z][^>]*>")
HTML_REMNANT = re.compile(r"<\s*/?\s*[a-zA-Z][^>]*>|&(?:amp|lt|gt|quot|#\d+);")
SPACE = re.compile(r"\s+")
EXAMPLES = 3
IMBALANCE_WARNING = 0.2  # warn when the smallest class is under 20% of the largest


def normalise(text: str) -> str:
    """Case, whitespace and HTML tags do not make a text different."""
    return SPACE.sub(" ", HTML_TAG.sub(" ", text)).strip().lower()


@dataclass
class Finding:
    check: str
    level: str  # "warning" or "info"
    message: str
    count: int = 0
    examples: list[Any] = field(default_factory=list)


@dataclass
class CheckReport:
    dataset: str
    rows: dict[str, int]
    findings: list[Finding]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "rows": self.rows, "findings": [asdict(f) for f in self.findings]}


def check_splits(splits, dataset_name: str, label_names: tuple[str, ...]) -> CheckReport:
    findings: list[Finding] = []
    keys: dict[str, dict[str, list[int]]] = {}
    for name, split in splits.items():
        texts, labels = split["text"], split["label"]
        findings += _text_quality(name, texts)
        findings += _balance(name, labels, label_names)
        exact, normal = defaultdict(list), defaultdict(list)
        for row, text in enumerate(texts):
            exact[text].append(row)
            normal[normalise(text)].append(row)
        findings += _duplicates(name, exact, "exact", texts)
        findings += _duplicates(name, normal, "normalised", texts)
        findings += _conflicts(name, normal, labels, label_names, texts)
        keys[name] = {"exact": exact, "normalised": normal}
    for first, second in combinations(splits.keys(), 2):
        findings += _leakage(first, second, keys, splits)
    return CheckReport(dataset_name, {name: len(split) for name, split in splits.items()}, findings)


def _text_quality(split: str, texts: list[str]) -> list[Finding]:
    found = []
    empty = [row for row, text in enumerate(texts) if not text or not text.strip()]
    if empty:
        found.append(Finding("empty_texts", "warning", f"{split}: {len(empty)} empty or whitespace-only texts",
                             len(empty), [f"row {row}" for row in empty[:EXAMPLES]]))
    html = [row for row, text in enumerate(texts) if text and HTML_REMNANT.search(text)]
    if html:
        sample = [f"row {row}: {HTML_REMNANT.search(texts[row]).group(0)!r}" for row in html[:EXAMPLES]]
        found.append(Finding("html", "warning", f"{split}: {len(html)} texts ({len(html) / len(texts):.1%}) hold "
                             "HTML remnants such as <br /> (the tokenizer sees them as words)", len(html), sample))
    return found


def _balance(split: str, labels: list[int], label_names: tuple[str, ...]) -> list[Finding]:
    counts = Counter(labels)
    summary = ", ".join(f"{label_names[i]} {counts.get(i, 0)} ({counts.get(i, 0) / max(len(labels), 1):.1%})"
                        for i in range(len(label_names)))
    smallest, largest = min(counts.get(i, 0) for i in range(len(label_names))), max(counts.values(), default=0)
    level = "warning" if largest and smallest / largest < IMBALANCE_WARNING else "info"
    return [Finding("class_balance", level, f"{split}: classes {summary}", len(labels))]


def _duplicates(split: str, groups: dict[str, list[int]], kind: str, texts: list[str]) -> list[Finding]:
    repeated = [rows for rows in groups.values() if len(rows) > 1]
    if not repeated:
        return []
    extra = sum(len(rows) - 1 for rows in repeated)
    examples = [f"rows {rows[:4]}: {_short(texts[rows[0]])}" for rows in repeated[:EXAMPLES]]
    return [Finding(f"duplicates_{kind}", "warning",
                    f"{split}: {extra} {kind} duplicate texts ({len(repeated)} texts appear more than once)",
                    extra, examples)]


def _conflicts(split, groups, labels, label_names, texts) -> list[Finding]:
    conflicting = [rows for rows in groups.values() if len(rows) > 1 and len({labels[r] for r in rows}) > 1]
    if not conflicting:
        return []
    examples = [f"rows {rows[:4]} labelled {sorted({label_names[labels[r]] for r in rows})}: {_short(texts[rows[0]])}"
                for rows in conflicting[:EXAMPLES]]
    return [Finding("label_conflicts", "warning", f"{split}: {len(conflicting)} texts appear with different labels",
                    len(conflicting), examples)]


def _leakage(first: str, second: str, keys, splits) -> list[Finding]:
    found = []
    for kind in ("exact", "normalised"):
        shared = keys[first][kind].keys() & keys[second][kind].keys()
        if not shared:
            continue
        rows = sorted(row for key in shared for row in keys[second][kind][key])
        texts = splits[second]["text"]
        examples = [f"{second} row {row}: {_short(texts[row])}" for row in rows[:EXAMPLES]]
        found.append(Finding(f"leakage_{kind}", "warning",
                             f"{second} and {first} share {len(shared)} {kind} texts ({len(rows)} {second} rows): "
                             f"tk run leaves them out of {second}", len(rows), examples))
    return found


def _short(text: str, limit: int = 80) -> str:
    text = SPACE.sub(" ", text).strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


def format_report(report: CheckReport) -> str:
    rows = ", ".join(f"{name} {n:,}" for name, n in report.rows.items())
    lines = [f"{report.dataset}: {rows} rows"]
    for finding in report.findings:
        mark = "WARNING" if finding.level == "warning" else "info"
        lines.append(f"  {mark:<7} {finding.message}")
        lines += [f"            e.g. {example}" for example in finding.examples]
    lines.append(f"{len(report.warnings)} warnings.")
    return "\n".join(lines)
