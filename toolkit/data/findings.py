"""What a data check found, and tk check's report of it: each finding with its level and examples,
and the checks that found nothing, named."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

EXAMPLES = 3  # shown per finding


@dataclass
class Finding:
    check: str
    level: str  # "error" (tk run would stop), "warning" or "info"
    message: str
    count: int = 0
    examples: list[Any] = field(default_factory=list)


@dataclass
class CheckReport:
    dataset: str
    rows: dict[str, int]
    findings: list[Finding]
    split_rows: dict[str, int] | None = None  # the splits tk run makes from the data (class_checks)
    split_notes: list[str] = field(default_factory=list)  # what tk run says while making them (rows left out)
    left_out: dict[str, dict] = field(default_factory=dict)  # the rows tk run leaves out of them (make_splits)

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def errors(self) -> list[Finding]:
        """What would stop tk run on this data: tk check exits with an error."""
        return [f for f in self.findings if f.level == "error"]

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "rows": self.rows, "split_rows": self.split_rows,
                "split_notes": self.split_notes, "left_out": self.left_out,
                "findings": [asdict(f) for f in self.findings], "checked_clean": found_nothing(self)}


# What tk check looked for, as its text report names it: the ones with no finding are listed as clean.
SEARCHED = {"duplicates_exact": "exact duplicate texts", "duplicates_normalised": "texts alike but for case, spaces "
            "or HTML", "leakage": "texts shared between splits", "label_conflicts": "texts with conflicting labels",
            "html": "HTML remnants", "broken_characters": "characters broken by a wrong decoding",
            "label_lists": "label names that look like lists",
            "similar_labels": "label names written two ways", "rare": "rare classes or labels",
            "classes_absent": "classes missing from a split"}


def found_nothing(report: CheckReport) -> list[str]:
    """The checks in SEARCHED that found nothing, as the text report names them. Rows tk run leaves out of the
    splits it carves because their text is also in training (``left_out``) are texts shared between splits too,
    though the data's own splits share none."""
    seen = {finding.check for finding in report.findings} | ({"leakage"} if report.left_out else set())
    return [what for check, what in SEARCHED.items() if not any(name.startswith(check) for name in seen)]


# What tk run does with the rows a warning names, and what the user can do: a warning alone left them to guess.
WHAT_TK_RUN_DOES = {
    "html": "tk run trains on the text as it is, markup included; to drop it, unescape the entities and strip the "
            "tags in your file (Python: html.unescape), then train again.",
    "broken_characters": "tk run trains on them as they are; the lost letters cannot be recovered from this file: "
                         "read the original with its real encoding and write the file again, or leave it.",
    "duplicates": "tk run trains on every copy (a repeated text counts more); a copy that would land in "
                  "validation or test is left out of it, so no score is inflated. Drop copies you did not mean.",
    "leakage": "tk run leaves those rows out of validation and test (it says so as it splits), so no score is "
               "inflated; the split is smaller by that much.",
    "label_conflicts": "tk run trains on both labels, which teaches the model neither: fix or drop one row of "
                       "each pair (tk cv, then tk audit, ranks such rows).",
    "class_balance": "tk run judges such data on macro F1 (docs/metrics.md); class_weights = \"balanced\" weighs "
                     "the small classes up in training.",
}


def what_tk_run_does(check: str) -> str | None:
    return next((advice for prefix, advice in WHAT_TK_RUN_DOES.items() if check.startswith(prefix)), None)


def format_report(report: CheckReport) -> str:
    rows = ", ".join(f"{name} {n:,}" for name, n in report.rows.items())
    lines = [f"{report.dataset}: {rows} rows"]
    if report.split_rows and report.split_rows != report.rows:
        lines.append("As tk run splits it: " + ", ".join(f"{name} {n:,}" for name, n in report.split_rows.items())
                     + " rows")
        lines += [f"  {note}" for note in report.split_notes]
    advised = set()
    for finding in report.findings:
        mark = {"error": "ERROR", "warning": "WARNING"}.get(finding.level, "info")
        lines.append(f"  {mark:<7} {finding.message}")
        lines += [f"            e.g. {example}" for example in finding.examples]
        advice = what_tk_run_does(finding.check) if finding.level == "warning" else None
        if advice and advice not in advised:  # once: exact and case-blind duplicates share theirs
            lines.append(f"            {advice}")
            advised.add(advice)
    if report.left_out or any(finding.examples for finding in report.findings):
        lines.append(ROW_NUMBERS)
    clean = found_nothing(report)
    if clean:
        lines.append(f"Checked, nothing found: {', '.join(clean)}.")
    errors = f"{len(report.errors):,} {plural(len(report.errors), 'error')}, " if report.errors else ""
    lines.append(f"{errors}{len(report.warnings):,} {plural(len(report.warnings), 'warning')}.")
    return "\n".join(lines)


ROW_NUMBERS = ("Rows are numbered as in the file each split was read from (a Hub dataset: its split), from 1, "
               "a header line not counted.")


def plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"
