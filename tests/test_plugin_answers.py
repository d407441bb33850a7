"""A plugin that answers with the wrong type, or exits at import, is named in one line; tk sweep's grid."""

import numpy as np
import pytest

from tests.helpers import fails_with, ok
from toolkit import hookimpl
from toolkit.errors import TkError
from toolkit.evaluation.scoring import score


def add_plugin(project, source):
    (project / "odd.py").write_text("from toolkit import hookimpl\n" + source)
    (project / "tasks.toml").write_text((project / "tasks.toml").read_text().replace(
        'plugins = ["toy_plugin"]', 'plugins = ["toy_plugin", "odd"]'))


def test_a_plugin_that_exits_at_import_is_reported(project):
    add_plugin(project, "import sys\nsys.exit(0)\n")
    result = fails_with("Plugin module 'odd' listed in tasks.toml 'plugins' called sys.exit(0)", "check", "toy")
    assert "odd.py, line 3" in result.output


def test_register_with_a_string_names_the_plugin_and_the_hook(project):
    add_plugin(project, "@hookimpl\ndef tk_register_datasets(register):\n    register('str')\n")
    fails_with("Plugin 'odd' answered tk_register_datasets with register('str'), a str; register takes a DatasetInfo",
               "list")


def test_dataset_labels_of_the_wrong_type_name_the_plugin_and_the_hook(project):
    add_plugin(project, "from toolkit.api import DatasetInfo\n"
                        "@hookimpl\ndef tk_register_datasets(register):\n    register(DatasetInfo('odd', ()))\n"
                        "@hookimpl\ndef tk_load_dataset(dataset, source):\n"
                        "    import datasets\n    if dataset.name != 'odd':\n        return None\n"
                        "    rows = datasets.Dataset.from_dict({'text': ['a b', 'c d'], 'label': ['x', 'y']})\n"
                        "    return datasets.DatasetDict(train=rows, test=rows)\n"
                        "@hookimpl\ndef tk_dataset_labels(dataset, splits, task):\n    return 42\n")
    fails_with("Plugin 'odd' answered tk_dataset_labels with 42 (int); it must return a tuple of label names",
               "check", "odd")


ODD_ROWS = ("from toolkit.api import DatasetInfo, WithNotes\n"
            "@hookimpl\ndef tk_register_datasets(register):\n    register(DatasetInfo('odd', ('x', 'y')))\n"
            "@hookimpl\ndef tk_load_dataset(dataset, source):\n"
            "    import datasets\n    if dataset.name != 'odd':\n        return None\n"
            "    def rows(word, n):\n"
            "        return datasets.Dataset.from_dict({'text': [f'{word} {i}' for i in range(n)],\n"
            "                                           'label': [i % 2 for i in range(n)]})\n"
            "    return WithNotes(datasets.DatasetDict(train=rows('a', 40), test=rows('b', 10)), NOTES)\n")


def test_a_dataset_plugins_notes_are_said(project):
    add_plugin(project, ODD_ROWS.replace("NOTES", "('read the odd rows',)"))
    assert "read the odd rows" in ok("check", "odd")


def test_notes_of_the_wrong_type_name_the_plugin_and_the_hook(project):
    add_plugin(project, ODD_ROWS.replace("NOTES", "'read the odd rows'"))  # a str, not a tuple of lines
    fails_with("Plugin 'odd' answered tk_load_dataset with WithNotes(", "check", "odd")


def test_metrics_of_the_wrong_type_name_the_plugin_and_the_hook(pm):
    class Stringly:
        @hookimpl
        def tk_compute_metrics(self, labels, probabilities, label_names):
            return "accuracy: 1.0"

    pm.register(Stringly(), "stringly")
    try:
        with pytest.raises(TkError, match="Plugin 'stringly' answered tk_compute_metrics with 'accuracy: 1.0'"):
            score(pm, np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]), ("a", "b"))
    finally:
        pm.unregister("stringly")
    assert score(pm, np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]), ("a", "b"))["accuracy"] == 1.0


@pytest.mark.parametrize("grid, message", [
    ("learning_rate=1e-4,0.0001", "1e-4 and 0.0001 are the same value"),
    ("epochs=2,2.0", "2 and 2.0 are the same value"),
    ("epochs=,", "an empty value"),
    ("epochs=2,,3", "an empty value"),
])
def test_sweep_grid_duplicates_by_value_and_empty_values_are_refused(project, grid, message):
    fails_with(message, "sweep", "toy", "--grid", grid, "--output", project / "runs")
    assert not (project / "runs").exists()
