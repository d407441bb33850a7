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


def format_report(report: CheckReport) -> str:
    rows = ", ".join(f"{name} {n:,}" for name, n in report.rows.items())
    lines = [f"{report.dataset}: {rows} rows"]
    if report.split_rows and report.split_rows != report.rows:
        lines.append("As tk run splits it: " + ", ".join(f"{name} {n:,}" for name, n in report.split_rows.items())
                     + " rows")
        lines += [f"  {note}" for note in report.split_notes]
    for finding in report.findings:
        mark = {"error": "ERROR", "warning": "WARNING"}.get(finding.level, "info")
        lines.append(f"  {mark:<7} {finding.message}")
        lines += [f"            e.g. {example}" for example in finding.examples]
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
