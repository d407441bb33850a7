"""report.html and model/README.md: built from a real toy run, attacked with hostile texts, opened in Chromium."""

import csv
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import make_project
from tests.helpers import reseal, toy_environment
from toolkit.cli import cli
from toolkit.runs.model_card import render_model_card
from toolkit.runs.report_page import render_comparison, write_report

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
LONG = "long " * 4000  # 20,000 characters
RTL = "هذا الفيلم رائع جدا · זה סרט נהדר"
LABEL = "<b>pos</b>"
FIGURES = {"curves": 2, "confusion": 1, "per-class": 1, "threshold": 2, "calibration": 2, "lengths": 1}
FORBIDDEN = {"script", "img", "b", "iframe", "object", "embed", "link", "a", "form", "input"}


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory, tiny_model):
    """One real toy run for the whole module (a run takes seconds; the tests only read it)."""
    root = make_project(tmp_path_factory.mktemp("report-project"))
    with toy_environment(root, tiny_model):
        result = invoke("run", "toy", "--set", "epochs=2", "--output", root / "runs")
        assert result.exit_code == 0, result.output
    return next((root / "runs").iterdir())


def copy_run(run_dir: Path, where: Path) -> Path:
    return Path(shutil.copytree(run_dir, where, ignore=shutil.ignore_patterns("report.html")))


def make_hostile(run_dir: Path) -> Path:
    """Rename class 'pos' to a label holding markup; put script, img, long and right-to-left texts everywhere."""
    path = run_dir / "predictions.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    rename = {"pos": LABEL}
    for row, text in zip(rows, [SCRIPT, IMG, LONG, RTL]):
        row["text"] = text
    fields = [("p_" + LABEL if f == "p_pos" else f) for f in rows[0]]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(fields)
        for row in rows:
            values = list(row.values())
            writer.writerow([values[0], *[rename.get(v, v) for v in values[1:4]], *values[4:]])  # label, predicted
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["per_class"][LABEL] = metrics["per_class"].pop("pos")
    metrics["task"] = f"toy {SCRIPT}"
    metrics["worst_mistakes"] = [{"text": t, "label": "neg", "predicted": LABEL, "confidence": 0.9}
                                 for t in (SCRIPT, IMG, LONG, RTL)]
    metrics.update(step_loss=[[s, 0.7 - s / 400] for s in range(1, 41)], baseline={"accuracy": 0.5, "label": IMG},
                   classes_absent=[LABEL], warnings=[f"warning {SCRIPT}"], select_metric="loss")
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["labels"] = ["neg", LABEL]
    manifest["notes"] = [f"note {IMG}"]
    manifest["engine"] = "eager"
    manifest["data_checks"] = {"dataset": "toy", "rows": {"train": 160, "test": 80}, "findings": [
        {"check": "html", "level": "warning", "message": f"test: 2 texts hold HTML {SCRIPT}", "count": 2,
         "examples": [SCRIPT, IMG, LONG]}]}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    return reseal(run_dir)


@pytest.fixture
def hostile(toy_run, tmp_path):
    return make_hostile(copy_run(toy_run, tmp_path / "hostile"))


class Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attributes = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += attrs


def svgs_per_section(page: str) -> dict[str, int]:
    parts = re.split(r'<section id="([^"]+)">', page)
    return {parts[i]: parts[i + 1].count("<svg") for i in range(1, len(parts), 2)}


def test_a_run_writes_its_report_and_model_card(toy_run):
    page = (toy_run / "report.html").read_text()
    assert "Content-Security-Policy" in page and "<script" not in page and "http://" not in page.split("</style>")[0]
    counts = svgs_per_section(page)
    assert all(counts.get(name) == n for name, n in FIGURES.items()), counts
    assert "Training loss at every logged step" in page  # tk run records the step-level curve
    assert "train, as loaded: classes neg" in page  # the data-check findings tk run recorded in manifest.json
    # the data as loaded, then as split: the second is the console's "Rows:" line
    assert "Rows: train 160, validation 40, test 80 (of the data's train 200, test 80, before tk run split, " \
           "subset and left rows out)" in page
    assert "95% intervals: Wilson for proportions, BCa bootstrap for F1. They cover the test set" in page
    # the card says what the saved head's probabilities are (a pipeline user gets them with no other word)
    card = (toy_run / "model" / "README.md").read_text()
    found = json.loads((toy_run / "metrics.json").read_text())["calibration"]
    if found["method"] == "temperature":
        assert f"| calibration | temperature {found['temperature']:.3f}, fitted on " in card
        assert "baked into the classifier head" in card
    else:
        assert "| calibration | off (" in card
    assert f"| expected calibration error of the saved model (10 equal-width bins) | " \
           f"{found.get('ece_after', found.get('ece')):.4f} |" in card


def test_hostile_texts_stay_text(hostile):
    page = (write_report(hostile)).read_text()
    parser = Elements()
    parser.feed(page)
    assert not FORBIDDEN & set(parser.tags), FORBIDDEN & set(parser.tags)
    assert not [name for name, _ in parser.attributes if name.startswith("on")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;b&gt;pos&lt;/b&gt;" in page and "<b>" not in page
    assert "[cut: first 1,000 of 20,000 characters shown]" in page and "long " * 400 not in page
    assert f'<td class="text" dir="auto">{RTL}' in page
    assert svgs_per_section(page) == {**svgs_per_section(page), **FIGURES}
    assert "majority-class baseline accuracy" in page and "per step" in page and "ECE" in page


def test_report_command_errors_and_comparisons(toy_run, tmp_path):
    half = tmp_path / "half"
    half.mkdir()
    (half / "status.json").write_text('{"status": "interrupted"}')
    result = invoke("report", half)
    assert result.exit_code == 1 and "its status is 'interrupted', not 'complete'" in result.output
    assert "tk run --resume" in result.output
    sweep = tmp_path / "sweep"
    runs = [copy_run(toy_run, sweep / f"toy-{i}") for i in (1, 2)]
    result = invoke("report", sweep)  # a sweep folder stands for its runs; the page lands in the cwd
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report.html").read_text()
    assert all(run.name in page for run in runs) and "Comparing 2 runs" in page
    result = invoke("report", runs[0], "--output", tmp_path / "one.html")
    assert result.exit_code == 0 and "Per-epoch table" in (tmp_path / "one.html").read_text()
    assert "Comparing 2 runs" in render_comparison(runs)


def test_model_card_loads_with_huggingface_hub(toy_run):
    from huggingface_hub import ModelCard

    card = ModelCard.load(toy_run / "model" / "README.md")
    metrics = json.loads((toy_run / "metrics.json").read_text())
    data = card.data
    assert data.library_name == "transformers" and data.pipeline_tag == "text-classification"
    assert data.base_model is None and data.datasets is None  # a local tiny model, local data: no Hub ids
    assert {r.metric_type: r.metric_value for r in data.eval_results} == {
        name: round(metrics[name], 4) for name in ("accuracy", "f1", "precision", "recall")}
    assert 'pipeline("text-classification"' in card.text and "max_length" in card.text
    assert "sampling noise of the test set only" in card.text


def test_model_card_names_hub_ids_baseline_and_absent_classes(toy_run):
    from huggingface_hub import ModelCard

    metrics = {**json.loads((toy_run / "metrics.json").read_text()), "baseline": {"accuracy": 0.5},
               "classes_absent": [LABEL]}
    manifest = {**json.loads((toy_run / "manifest.json").read_text()), "model_source": "bert-base-uncased",
                "dataset_hub_id": "stanfordnlp/imdb", "engine": "cuda_graphs"}
    card = ModelCard(render_model_card(metrics, manifest))
    assert card.data.base_model == "bert-base-uncased" and card.data.datasets == ["stanfordnlp/imdb"]
    assert "baseline accuracy | 0.5000" in card.text and "&lt;b&gt;pos&lt;/b&gt;" in card.text
    assert "cuda_graphs" in card.text
    local = ModelCard(render_model_card(metrics, {**manifest, "model_source": str(toy_run)}))
    assert local.data.base_model is None
    noted = render_model_card(metrics, {**manifest, "notes": ["Note: stride is not used.", "Validation: 40 rows."]})
    assert "- Note: stride is not used.\n- Note: Validation: 40 rows." in noted  # never "Note: Note:"
    assert "- Rows used: train 160, validation 40, test 80\n" in noted  # the sizes, where a key was left unset


def test_precision_of_a_class_no_row_was_predicted_as_is_called_undefined_everywhere(toy_run, tmp_path):
    """The console, report.html and the model card all say why 'pos' shows precision 0 (zero_division=0)."""
    import html

    from toolkit.evaluation.report import format_metrics

    said = ("Precision is undefined for 'pos' (no row was predicted as it): shown as 0, as scikit-learn's "
            "zero_division=0 does.")
    run = copy_run(toy_run, tmp_path / "never-pos")
    manifest = json.loads((run / "manifest.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["confusion_matrix"] = [[30, 10], [10, 30]]
    assert said not in format_metrics(metrics) + render_model_card(metrics, manifest)
    metrics["confusion_matrix"] = [[40, 0], [40, 0]]  # every row predicted 'neg'
    (run / "metrics.json").write_text(json.dumps(metrics))
    reseal(run)
    assert f"  {said}" in format_metrics(metrics).splitlines()  # a line of its own, under the per-class table
    assert said in render_model_card(metrics, manifest)
    assert html.escape(said) in write_report(run).read_text()


def test_counts_have_thousands_separators_in_the_console_the_page_and_the_card(toy_run, tmp_path):
    from toolkit.evaluation.report import format_metrics

    run = copy_run(toy_run, tmp_path / "big")
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.update(n=12500, confusion_matrix=[[6000, 250], [1250, 5000]])
    for name in ("neg", "pos"):
        metrics["per_class"][name]["support"] = 6250
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["data_fingerprint"]["test"]["rows"] = 12500
    for path, data in ((run / "metrics.json", metrics), (run / "manifest.json", manifest)):
        path.write_text(json.dumps(data))
    reseal(run)
    rows = [line.split() for line in format_metrics(metrics).splitlines() if line.split()[:1] in (["neg"], ["pos"])]
    assert [row[-1] for row in rows] == ["6,250", "6,250"]  # the support column
    card = render_model_card(metrics, manifest)
    assert "On 12,500 texts of the test split" in card and "- `test`: 12,500 rows" in card
    page = write_report(run).read_text()
    assert "12,500 test texts" in page and '<td class="num">6,250</td>' in page and "(n=6,250)" in page
    assert "(n=6,250)" in page.split('<section id="confusion">')[1].split("</section>")[0]  # each true class's rows


def test_your_files_are_named_in_the_page_header_and_the_cards_test_results(toy_run, tmp_path):
    """A run on your own files: report.html's header names the file, not the plugin 'files', and the card's
    results name the test file the metrics come from (test_data), not the training file."""
    run = copy_run(toy_run, tmp_path / "own-data")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["task"].update(dataset="files", test_data="questions_test.csv")
    manifest["data_path"] = str(tmp_path / "questions_train.csv")
    (run / "manifest.json").write_text(json.dumps(manifest))
    reseal(run)
    metrics = json.loads((run / "metrics.json").read_text())
    header = write_report(run).read_text().split("</header>")[0]
    assert "data questions_train.csv" in header and "files" not in header.split("<h1")[1]
    card = render_model_card(metrics, manifest)
    results = card.split("model-index:")[1].split("---")[0]
    assert "name: questions_test.csv" in results and "questions_train.csv" not in results
    assert "on `questions_train.csv`" in card  # what it was trained on
    manifest["data_source"] = f"{manifest['data_path']} (from the task's data key)"
    manifest["notes"] = [f"files: train from {manifest['data_path']}"]
    card = render_model_card(metrics, manifest)
    assert "- Source: questions_train.csv (from the task's data key)" in card and str(tmp_path) not in card
    assert "Note: files: train from questions_train.csv" in card


def test_a_p_value_below_the_smallest_float_is_not_printed_as_zero():
    from toolkit.evaluation.report import format_metrics

    baseline = {"label": "neg", "source": "training split", "accuracy": 0.5, "f1_macro": 0.33, "mcnemar_p": 0.0}
    printed = format_metrics({"split": "test", "n": 25000, "accuracy": 0.9, "baseline": baseline})
    assert "McNemar exact p = < 1e-300" in printed and "25,000 examples" in printed


def chromium(*args, timeout=60):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium); the browser test needs it")
    result = subprocess.run([exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                             "--no-first-run", "--mute-audio", *map(str, args)],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.slow  # four Chromium starts: over 10 s on a busy two-core machine
def test_hostile_report_in_chromium(hostile, tmp_path):
    from PIL import Image

    page = write_report(hostile)
    dom = chromium("--dump-dom", page.as_uri())
    assert "<script" not in dom and "<img" not in dom and "<b>" not in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    counts = svgs_per_section(dom)
    assert all(counts.get(name) == n for name, n in FIGURES.items()), counts
    # The policy itself: a script planted in the page does not run; without the policy it would.
    planted = '<script>document.body.setAttribute("data-" + "ran", "y" + "es")</script></body>'
    for name, keep_policy in (("with-csp.html", True), ("without-csp.html", False)):
        text = page.read_text().replace("</body>", planted)
        if not keep_policy:
            text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text)
        (tmp_path / name).write_text(text)
        ran = 'data-ran="yes"' in chromium("--dump-dom", (tmp_path / name).as_uri())
        assert ran is not keep_policy, name
    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1000,7000", page.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (7000, 1000)
    ink = (pixels < 200).any(axis=2).mean()
    colour = (pixels.max(axis=2) - pixels.min(axis=2) > 80).mean()  # the figures' blues and oranges
    assert ink > 0.02 and colour > 0.004, (ink, colour)


def test_figure_text_from_labels_is_escaped_and_not_math():
    from toolkit.runs import report_figures as figures

    svg = figures.confusion([[3, 1], [0, 2]], [SCRIPT, "$x^2$ & <b>"])
    parser = Elements()
    parser.feed(svg)
    assert not FORBIDDEN & set(parser.tags)
    assert "&lt;script&gt;alert(1)" in svg and "$x^2$ &amp; &lt;b&gt;" in svg  # escaped, cut, no TeX
    assert svg.startswith("<svg") and 'width="' not in svg.split(">", 1)[0]  # scales with the page


def test_settings_show_one_engine_row_and_findings_whole(toy_run, tmp_path):
    run_dir = copy_run(toy_run, tmp_path / "copy")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    finding = "train: classes " + ", ".join(f"label{i} {i} rows" for i in range(80)) + ". The end."
    manifest["data_checks"]["findings"] = [{"check": "class_balance", "level": "info", "message": finding}]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    reseal(run_dir)
    page = write_report(run_dir).read_text()
    assert len(finding) > 1000 and finding in page and "[cut:" not in page.split('id="data-checks"')[1][:5000]
    details = page.split('<section id="details">')[1]
    assert len(re.findall(r"<td[^>]*>engine</td>", details)) == 1, details[:2000]
    assert re.search(r"<td[^>]*>eager \(task key engine = &quot;auto&quot;\)</td>", details)


def test_model_card_names_the_base_model_its_license_language_and_averages(toy_run):
    from huggingface_hub import ModelCard

    metrics = json.loads((toy_run / "metrics.json").read_text())
    manifest = {**json.loads((toy_run / "manifest.json").read_text()), "model_source": "/site-packages/model",
                "base_model": {"name": "minilm", "hub_id": "sentence-transformers/all-MiniLM-L6-v2",
                               "license": "apache-2.0", "language": "en"},
                "data_path": "/data/tickets.csv", "task": {"dataset": "files", "name": "tickets"}}
    card = ModelCard(render_model_card(metrics, manifest))
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert card.data.license == "apache-2.0" and card.data.language == "en"
    assert "License: `apache-2.0`, the base model's. Language: `en`." in card.text
    result = card.data.eval_results[0]
    assert result.dataset_name == "tickets.csv" and result.dataset_type == "local"
    names = {r.metric_type: r.metric_name for r in card.data.eval_results}
    assert names["f1"] == "f1 (positive: pos)" and names["accuracy"] == "accuracy"
    unknown = ModelCard(render_model_card(metrics, {**manifest, "base_model": None}))
    assert unknown.data.license == "unknown" and "License: unknown: tk does not know" in unknown.text


def many_class_run(toy_run, folder: Path, classes: int = 60) -> Path:
    """The toy run rewritten as a 60-class one: real metrics of a model that confuses neighbouring classes."""
    from plugins.metrics import tk_compute_metrics
    from toolkit.runs.artifacts import write_predictions

    run_dir = copy_run(toy_run, folder)
    rng = np.random.default_rng(0)
    names = tuple(f"category-{i:02d}" for i in range(classes))
    labels = np.repeat(np.arange(classes), 10)
    predicted = np.where(rng.random(len(labels)) < 0.6, labels, (labels + 1) % classes)
    probabilities = np.full((len(labels), classes), 0.1 / (classes - 1))
    probabilities[np.arange(len(labels)), predicted] = 0.9
    metrics = {**json.loads((run_dir / "metrics.json").read_text()),
               **tk_compute_metrics(labels, probabilities, names, True)}
    metrics.pop("positive_label", None)
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (run_dir / "manifest.json").write_text(json.dumps({**manifest, "labels": list(names)}))
    write_predictions(run_dir / "predictions.csv", [f"text {i}" for i in range(len(labels))], labels, probabilities,
                      names)
    return reseal(run_dir)


def test_a_60_class_report_shows_tables_not_unreadable_figures(toy_run, tmp_path):
    page = write_report(many_class_run(toy_run, tmp_path / "many")).read_text()
    sections = dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', page, re.S))
    confusion, per_class = sections["confusion"], sections["per-class"]
    assert "<svg" not in confusion and "<svg" not in per_class  # no 6-pixel labels, no 2,400-pixel bar chart
    assert "Most frequent confusions" in confusion and "60 classes: too many for a readable matrix" in confusion
    assert confusion.count("<tr>") == 1 + 25  # the header and the 25 most frequent confusions
    assert re.search(r"<td[^>]*>category-\d\d</td><td[^>]*>category-\d\d</td><td class=\"num\">\d+</td>", confusion)
    assert per_class.count("<tr>") == 1 + 60 and "worst F1 first" in per_class
    f1 = [float(x) for x in re.findall(r"</td><td class=\"num\">([01]\.\d{3})</td><td class=\"num\">[01]\.\d{3}</td>"
                                       r"<td[^>]*>\[", per_class)]
    assert len(f1) == 60 and f1 == sorted(f1)
    assert "recall 95%" in per_class and re.search(r"\[0\.\d{3}, [01]\.\d{3}\]", per_class)


def test_a_few_classes_get_a_row_normalised_confusion_matrix(toy_run, tmp_path):
    page = write_report(many_class_run(toy_run, tmp_path / "five", classes=5)).read_text()
    confusion = page.split('<section id="confusion">')[1].split("</section>")[0]
    assert confusion.count("<svg") == 1 and "share of each true class" in confusion
    assert "category-00 (n=10)" in confusion and re.search(r">0\.[0-9]{2}<", confusion)  # shares, not counts


@pytest.mark.slow  # two Chromium starts
def test_a_60_class_report_in_chromium(toy_run, tmp_path):
    from PIL import Image

    page = write_report(many_class_run(toy_run, tmp_path / "many"))
    dom = chromium("--dump-dom", page.as_uri())
    confusion = dom.split('<section id="confusion">')[1].split("</section>")[0]
    assert "<table>" in confusion and confusion.count("<tr>") == 26 and "<svg" not in confusion
    shot = tmp_path / "many.png"
    chromium(f"--screenshot={shot}", "--window-size=1000,6000", page.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    ink_rows = (pixels < 128).any(axis=(1, 2)).nonzero()[0]
    assert len(ink_rows) and (pixels < 200).any(axis=2).mean() > 0.01  # text rendered, not a blank page


def test_report_of_two_runs_names_them_whole_warns_on_weighted_losses_and_counts_whole_epochs(toy_run, tmp_path):
    long_a, long_b = "toy-class-weights-balanced-20261204-101500", "toy-class-weights-balanced-20261204-101501"
    runs = [copy_run(toy_run, tmp_path / name) for name in (long_a, long_b)]
    manifest = json.loads((runs[1] / "manifest.json").read_text())
    manifest["task"]["class_weights"] = "balanced"
    (runs[1] / "manifest.json").write_text(json.dumps(manifest))
    reseal(runs[1])
    page = render_comparison(runs)
    curves = page.split('<section id="curves">')[1].split("</section>")[0]
    assert long_a in curves and long_b in curves  # whole names in the legend, not one shared cut prefix
    assert "so the losses do not compare across runs" in curves
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", curves)
    assert texts[texts.index("epoch") - 2:texts.index("epoch")] == ["1", "2"], texts  # whole epochs: 1 and 2 only
    assert "so the losses do not compare" not in render_comparison(runs[:1] + [copy_run(toy_run, tmp_path / "c")])


def test_a_data_check_example_shows_as_tk_check_quoted_it():
    from toolkit.runs.report_sections import example_text

    assert example_text("'\"What war saw battles at Parrot ?\"'") == "'\"What war saw battles at Parrot ?\"'"  # no \"
    assert example_text([3, 9]) == "[3, 9]"
