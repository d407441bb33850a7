"""Runs on the real data in ../shared/data; skipped where that folder is absent."""

import csv
import json

import pytest
from click.testing import CliRunner

from toolkit.cli import cli


@pytest.mark.slow
def test_imdb_minilm_on_a_slice_of_real_imdb(shared_data, monkeypatch, tmp_path):
    monkeypatch.setenv("TK_DATA_DIR", str(shared_data))
    result = CliRunner().invoke(cli, [
        "run", "imdb-minilm", "--output", str(tmp_path / "runs"),
        "--set", "train_size=96", "--set", "validation_size=32", "--set", "eval_size=64",
        "--set", "epochs=1", "--set", "max_length=64", "--set", "learning_rate=1e-4"])
    assert result.exit_code == 0, result.output
    assert "imdb from" in result.output and "TK_DATA_DIR" in result.output
    run = next((tmp_path / "runs").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n"] == 64
    with open(run / "predictions.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 64  # 96 reviews and one epoch teach little: the numbers must agree, not be good
    assert metrics["accuracy"] == sum(row["label"] == row["predicted"] for row in rows) / 64
    assert json.loads((run / "model" / "config.json").read_text())["id2label"] == {"0": "neg", "1": "pos"}


def test_sentiment140_raw_files_map_polarity_and_drop_neutral(shared_data, pm):
    from toolkit.data.loading import load_with_labels
    from toolkit.records import DataSource

    loaded = load_with_labels(pm, pm.dataset("sentiment140"), DataSource(shared_data / "sentiment140", "test"))
    splits, notes = loaded.splits, loaded.notes
    assert len(splits["train"]) == 100_000 or len(splits["train"]) == 20_000
    assert len(splits["test"]) == 498 - 139
    assert any("139 rows labelled 2" in note for note in notes)
    assert sorted(set(splits["test"]["label"])) == [0, 1]
