"""tk serve over real HTTP: real `tk serve` processes on free ports, real runs, the standard library's client.

One server per kind of run, started once for the module: single-label (with a token and small limits, so
every refusal is cheap to provoke), multi-label (with --workers 2), chunks; the SIGTERM test starts its own.
"""

import json
import re
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import TESTS, TOY_TASKS, tk, tk_json, toy_environment
from tests.served import Server
from tests.test_json_output import DOC, documented
from toolkit.config import with_overrides
from toolkit.plugins import PluginManager
from toolkit.runs.pipeline import run_task
from toolkit.tasks_file import load_config
from toolkit.testing import multilabel_keyword_rows, write_keyword_dataset
from toolkit.training.progress import Progress

pytestmark = pytest.mark.slow

TOKEN = "s3cret-token"
LIMITS = ("--max-texts", 8, "--max-body", 4096, "--max-batch", 16, "--max-wait-ms", 50)
TAGS_TASK = """
[tasks.tags]
dataset = "files"
data = "tags.jsonl"
model = "{model}"
problem = "multi-label"
max_length = 48
epochs = 1
validation_size = 40
seed = 1
"""
TEXTS = ["great film, wonderful", "an awful bad movie", "fine " * 200]  # the last one is over max_length


def train(root, name, pm_plugins=(), **overrides):
    pm = PluginManager().load(pm_plugins, root)
    task = with_overrides(load_config(root / "tasks.toml", pm).task(name), overrides)
    outcome = run_task(pm, task, output=root / "runs", base=root, progress=Progress(lambda t: None, bar=False))
    assert outcome.status == "complete"
    return outcome.run_dir


@pytest.fixture(scope="module")
def root(tmp_path_factory, tiny_model):
    folder = tmp_path_factory.mktemp("serve")
    with toy_environment(folder, tiny_model):
        yield folder


@pytest.fixture(scope="module")
def single(root):
    shutil.copy(TESTS / "toy_plugin.py", root / "toy_plugin.py")
    (root / "tasks.toml").write_text(TOY_TASKS)
    write_keyword_dataset(root / "toy-data")
    return train(root, "toy", ("toy_plugin",), epochs=1)


@pytest.fixture(scope="module")
def chunks(root, single):
    return train(root, "toy", ("toy_plugin",), epochs=1, long_text="chunks", max_length=16)


@pytest.fixture(scope="module")
def multi(root, tiny_model):
    folder = root / "tags"
    folder.mkdir()
    rows = multilabel_keyword_rows(200, ("neg", "pos"), seed=1, words=(2, 8))
    (folder / "tags.jsonl").write_text("".join(json.dumps({"text": t, "labels": ls}) + "\n" for t, ls in rows))
    (folder / "tasks.toml").write_text(TAGS_TASK.format(model=tiny_model))
    return train(folder, "tags")


@pytest.fixture(scope="module")
def server(root, single):
    with Server(single, "--token", TOKEN, *LIMITS, cwd=root) as running:
        yield running


def predict_json(run, *texts):
    return tk_json("predict", run, *texts)[0]["predictions"]


def test_predictions_equal_tk_predicts(server, single):
    status, answer = server.request("POST", "/predict", {"texts": TEXTS}, token=TOKEN)
    assert status == 200, answer
    assert answer["labels"] == ["neg", "pos"] and answer["schema"] == "tk.predict/1"
    assert answer["predictions"] == predict_json(single, *TEXTS)
    assert [row["cut"] for row in answer["predictions"]] == [False, False, True]  # "fine " * 200: 64 tokens read
    printed = tk("predict", single, *TEXTS)
    assert printed.stdout.count("\n") == 3  # the answers alone on stdout; the note on stderr
    assert ("1 of 3 texts is longer than max_length = 64 tokens; tk read the start of each, as in training"
            in printed.stderr)
    status, one = server.request("POST", "/predict", {"text": TEXTS[0]}, token=TOKEN)
    assert status == 200 and one["predictions"] == predict_json(single, TEXTS[0])


@pytest.mark.parametrize("kind", ["multi", "chunks"])
def test_multi_label_and_chunks_answers_equal_tk_predicts(kind, request, root):
    run = request.getfixturevalue(kind)
    options = ("--workers", 2) if kind == "multi" else ("--json",)
    with Server(run, *options, cwd=root) as running:
        status, answer = running.request("POST", "/predict", {"texts": TEXTS})
        assert status == 200, answer
        assert answer["predictions"] == predict_json(run, *TEXTS)
        status, metadata = running.request("GET", "/metadata")
        if kind == "multi":  # label sets with the run's tuned thresholds
            assert metadata["problem"] == "multi-label" and set(metadata["thresholds"]) == {"neg", "pos"}
            assert all("labels" in row and "thresholds" in row for row in answer["predictions"])
            for _ in range(4):  # whichever worker answers, it scores alike; /metrics adds up both workers
                assert running.request("POST", "/predict", {"text": TEXTS[1]})[1]["predictions"] == \
                    predict_json(run, TEXTS[1])
            metrics = running.request("GET", "/metrics")[1]
            assert 'tk_serve_requests_total{path="/predict",status="200"} 5.0' in metrics
        else:
            assert metadata["long_text"] == "chunks" and metadata["max_length"] == 16
            assert metadata["stride"] == 4 and metadata["pooling"] == "logits"
            printed = json.loads(running.output()[running.output().index("{"):running.output().rindex("}") + 1])
            assert printed["url"] == running.url and set(printed) == documented("`tk serve --json`")
        assert running.stop() == 0


@pytest.mark.parametrize("kind", ["multi", "chunks"])
def test_an_export_of_a_multi_label_or_chunks_run_answers_as_the_run(kind, request, root, tmp_path, monkeypatch):
    """tk export's check and tk predict on the export: label sets with the run's thresholds, windows pooled."""
    pytest.importorskip("onnxruntime")
    run = request.getfixturevalue(kind)
    near = 0.02  # the run may score in bf16 (a CPU with fast bf16): its rounding, not the export's, sets the gap
    monkeypatch.chdir(root / "tags" if kind == "multi" else root)  # the tasks.toml the run's data is named in
    # the floor is the test's own tolerance below: on a CPU with fast bf16 a tiny model's borderline rows may
    # differ by rounding, and the check would refuse the export for that alone
    document, _ = tk_json("export", run, "--output", tmp_path / "onnx", "--min-agreement", "0")
    assert document["problem"] == ("multi-label" if kind == "multi" else "single-label") and document["fusions"]
    assert document["check"]["max_probability_difference"] < near
    ours, theirs = predict_json(run, *TEXTS), predict_json(tmp_path / "onnx", *TEXTS)
    assert [row["cut"] for row in theirs] == [row["cut"] for row in ours]
    for a, b in zip(ours, theirs):
        for label, p in a["probabilities"].items():
            assert abs(p - b["probabilities"][label]) < near
            if kind == "multi":  # the same label set, but for a label within rounding of its threshold
                assert (label in a["labels"]) == (label in b["labels"]) or abs(p - a["thresholds"][label]) < near
        if kind == "chunks":  # two classes: the same label, but for a text within rounding of 0.5
            assert a["label"] == b["label"] or max(a["probabilities"].values()) < 0.5 + near
    card = (tmp_path / "onnx" / "README.md").read_text()  # the windows a user outside tk must reproduce
    assert ("overlapping windows of 16 tokens (special tokens included), each sharing 4 tokens" in card) == (
        kind == "chunks")


def test_a_request_that_fails_its_batch_fails_alone():
    """Scoring raises for one request's text: the requests batched with it are scored again on their own and
    answered; only that request gets the error (a 500 from the app)."""
    import asyncio

    from toolkit.serving.batcher import MicroBatcher

    passes = []

    def answer(texts):
        passes.append(list(texts))
        if "breaks the model" in texts:
            raise RuntimeError("the model failed")
        return [text.upper() for text in texts]

    async def three_clients():
        batcher = MicroBatcher(answer, max_batch=16, max_wait=0.2)
        batcher.start()
        found = await asyncio.gather(batcher.predict(["good"]), batcher.predict(["breaks the model"]),
                                     batcher.predict(["also", "good"]), return_exceptions=True)
        await batcher.stop()
        return found

    good, bad, also = asyncio.run(three_clients())
    assert good == ["GOOD"] and also == ["ALSO", "GOOD"] and isinstance(bad, RuntimeError)
    assert passes[0] == ["good", "breaks the model", "also", "good"]  # one pass for all three, then one each


def test_concurrent_clients_share_forward_passes(server):
    texts = [f"text number {i} " + ("great " if i % 2 else "awful ") * (i % 5) for i in range(32)]
    start = threading.Barrier(len(texts))
    before = batch_count(server)

    def client(text):
        start.wait()
        return server.request("POST", "/predict", {"text": text}, token=TOKEN)

    with ThreadPoolExecutor(len(texts)) as pool:
        answers = list(pool.map(client, texts))
    assert [status for status, _ in answers] == [200] * len(texts)
    assert [answer["predictions"][0]["text"] for _, answer in answers] == texts  # nobody got another's answer
    passes = batch_count(server) - before
    assert 1 <= passes < len(texts), f"{passes} forward passes for {len(texts)} concurrent requests"
    alone = server.request("POST", "/predict", {"texts": texts[:8]}, token=TOKEN)[1]["predictions"]
    for row, (_, answer) in zip(alone, answers):  # batched with other texts: the same answer (padding aside)
        shared = answer["predictions"][0]
        assert shared["label"] == row["label"]
        assert all(abs(shared["probabilities"][k] - v) < 0.01 for k, v in row["probabilities"].items())


def batch_count(server) -> float:
    metrics = server.request("GET", "/metrics", token=TOKEN)[1]
    counts = [line for line in metrics.splitlines() if line.startswith("tk_serve_batch_texts_count")]
    return float(counts[0].split()[-1])


BAD = [
    (b'{"texts": ["a", ', 400, "not valid JSON"),
    (b"", 400, "the body is empty"),
    (b"\xff\xfe\xfa not utf-8", 400, "not valid JSON"),
    (b'["a text"]', 422, "not an object"),
    (b"{}", 422, "neither 'text' nor 'texts'"),
    (b'{"text": "a", "min_confidence": 0.9}', 422, "the body has 'min_confidence', which tk serve does not read"),
    (b'{"txt": "a"}', 422, "the body has 'txt', which tk serve does not read; send {\"text\": \"...\"} or "
                           "{\"texts\": [\"...\", \"...\"]}. Did you mean 'text'?"),
    (b'{"text": "a", "texts": ["b"]}', 422, "both"),
    (b'{"text": 5}', 422, "'text' is a JSON number, not a string"),
    (b'{"text": "   "}', 422, "'text' is empty"),
    (b'{"texts": "a"}', 422, "not a list"),
    (b'{"texts": []}', 422, "empty list"),
    (b'{"texts": ["a", null]}', 422, "'texts'[1] is a JSON null"),
    (b'{"texts": ["fine", "\\ud800 half a pair"]}', 422, "'texts'[1] is not valid Unicode text (a lone surrogate"),
    (b'{"texts": ' + b"[" * 1900 + b"]" * 1900 + b"}", 400, "nests JSON arrays or objects too deep"),
    (json.dumps({"texts": ["a"] * 9}).encode(), 413, "9 texts in one request, over the limit of 8"),
    (json.dumps({"text": "a" * 5000}).encode(), 413, "over the limit of 4,096 bytes"),
]


@pytest.mark.parametrize("body,status,message", BAD, ids=[message for _, _, message in BAD])
def test_bad_input_is_a_4xx_json_error_and_the_service_stays_up(server, body, status, message):
    got, answer = server.request("POST", "/predict", body, token=TOKEN)
    assert (got, answer["status"]) == (status, status) and message in answer["error"], answer
    assert server.request("POST", "/predict", {"text": "still here"}, token=TOKEN)[0] == 200


def test_body_over_the_limit_without_content_length_is_refused_while_it_streams(server):
    import http.client

    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    body = json.dumps({"text": "b" * 6000}).encode()
    connection.request("POST", "/predict", body=iter([body[:3000], body[3000:]]),
                       headers={"Authorization": f"Bearer {TOKEN}", "Transfer-Encoding": "chunked"},
                       encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413 and "4,096 bytes" in json.loads(response.read())["error"]


def test_unknown_paths_and_methods_are_json_errors(server):
    status, answer = server.request("GET", "/nowhere", token=TOKEN)
    listed = answer["error"].split("Endpoints: ", 1)[1].split(", ")
    assert status == 404 and listed == ["GET /health", "GET /metadata", "GET /metrics", "GET /openapi.json",
                                        "GET /ready", "POST /predict"]
    status, answer = server.request("GET", "/predict", token=TOKEN)
    assert status == 405 and answer["status"] == 405


def test_the_token_guards_every_endpoint_but_health(server):
    assert server.request("GET", "/health") == (200, {"status": "alive"})
    for method, path, body in [("POST", "/predict", {"text": "x"}), ("GET", "/ready", None),
                               ("GET", "/metadata", None), ("GET", "/metrics", None), ("GET", "/openapi.json", None)]:
        assert server.request(method, path, body)[0] == 401
        assert server.request(method, path, body, token=TOKEN + "x")[0] == 401
        assert server.request(method, path, body, headers={"Authorization": TOKEN})[0] == 401  # no "Bearer"
        assert server.request(method, path, body, headers={"Authorization": f"Basic {TOKEN}"})[0] == 401
        assert server.request(method, path, body, headers={"Authorization": f"bearer {TOKEN}"})[0] == 200  # any case
        assert server.request(method, path, body, token=TOKEN)[0] == 200
    assert "Authorization: Bearer" in server.request("GET", "/ready")[1]["error"]


def test_metadata_openapi_and_metrics(server, single):
    status, metadata = server.request("GET", "/metadata", token=TOKEN)
    section = DOC.split("\n### `GET /metadata`\n", 1)[1].split("\n### ", 1)[0]
    assert set(metadata) == set(re.findall(r"^\| `([^`]+)` \|", section, re.M))  # docs/json.md lists every field
    assert metadata["run_dir"] == str(single) and metadata["labels"] == ["neg", "pos"]
    assert (metadata["problem"], metadata["max_length"], metadata["truncation"], metadata["long_text"]) == \
        ("single-label", 64, "head", "truncate")
    assert metadata["limits"] == {"max_texts": 8, "max_body_bytes": 4096, "max_batch": 16, "max_wait_ms": 50.0}
    schema = server.request("GET", "/openapi.json", token=TOKEN)[1]
    assert schema["openapi"].startswith("3.")
    for path, operations in schema["paths"].items():  # every path it documents answers (or refuses) as documented
        for method, operation in operations.items():
            got = server.request(method.upper(), path, {"text": "x"} if method == "post" else None, token=TOKEN)[0]
            assert str(got) in operation["responses"], (method, path, got)
    assert server.request("GET", "/ready", token=TOKEN) == (200, {"status": "ready"})
    assert server.request("GET", "/ready")[0] == 401  # counted below, whichever tests ran before this one
    metrics = server.request("GET", "/metrics", token=TOKEN)[1]
    for series in ('tk_serve_requests_total{path="/predict",status="200"}', "tk_serve_request_seconds_bucket",
                   "tk_serve_batch_texts_bucket", 'tk_serve_errors_total{reason="unauthorised"}'):
        assert series in metrics


def test_sigterm_answers_the_request_in_flight_then_exits_0(root, single):
    """Every interface without a token: a warning. The request waits in the batcher (--max-wait-ms 3000) when
    SIGTERM arrives: it is answered, new connections are not, and tk exits 0. --access-log logs it, with no
    start-up chatter from uvicorn."""
    with Server(single, "--host", "0.0.0.0", "--max-wait-ms", 3000, "--access-log", cwd=root) as running:
        assert "WARNING: listening on 0.0.0.0 without a token" in running.output()
        local = running.url.replace("0.0.0.0", "127.0.0.1")
        running.url = local
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(running.request, "POST", "/predict", {"text": "great film"})
            threading.Event().wait(1.0)  # the request is in, waiting for others to join its batch
            assert running.stop() == 0
            status, answer = in_flight.result()
        assert status == 200 and answer["predictions"][0]["text"] == "great film"
        with pytest.raises(OSError):
            running.request("GET", "/health", timeout=5)
        assert running.output().rstrip().endswith(f"Stopped serving {single}.")
        assert re.search(r'^\d{4}-\d\d-\d\d [\d:,]+ 127\.0\.0\.1:\d+ "POST /predict HTTP/1\.1" 200 OK$',
                         running.output(), re.M)
        assert "Uvicorn running" not in running.output() and "Started server process" not in running.output()


def test_an_unfinished_or_damaged_run_is_refused_with_tk_predicts_error(single, tmp_path):
    run = shutil.copytree(single, tmp_path / "run")
    (run / "model" / "model.safetensors").write_bytes(b"")
    refused = tk("serve", run, "--port", 0)
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    anyway = " (To use it anyway, at your own risk: --allow-incomplete.)"  # tk predict's option; serve has none
    assert refused.output.strip() == tk("predict", run, "x").output.strip().removesuffix(anyway)
    shutil.rmtree(run / "model")
    assert tk("serve", run).output.strip() == tk("predict", run, "x").output.strip().removesuffix(anyway)


def test_an_empty_token_is_refused(single, monkeypatch):
    result = tk("serve", single, "--token", " ")
    assert result.exit_code == 1 and "The token (--token or TK_SERVE_TOKEN) is empty" in result.output
    monkeypatch.setenv("TK_SERVE_TOKEN", "")  # docker run -e TK_SERVE_TOKEN=$TOKEN with $TOKEN unset
    result = tk("serve", single)
    assert result.exit_code == 1 and "TK_SERVE_TOKEN is set but empty" in result.output


def test_accepted_connections_send_without_nagles_delay():
    """tk serve's listening socket names TCP as its protocol, so asyncio (uvicorn's loop) turns Nagle's algorithm
    off on every connection it accepts: with it on, a response written in two parts waited ~40 ms for the
    client's delayed ACK (GET /health took 44 ms instead of 0.3)."""
    import asyncio
    import socket

    from toolkit.serving.server import bind

    async def nodelay_of_accepted() -> int:
        accepted = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        listening = bind("127.0.0.1", 0)
        server = await asyncio.get_running_loop().create_server(Probe, sock=listening)
        try:
            _, writer = await asyncio.open_connection(*listening.getsockname()[:2])
            found = await asyncio.wait_for(accepted, 10)
            writer.close()
            return found
        finally:
            server.close()

    assert asyncio.run(nodelay_of_accepted()) != 0


def test_a_port_in_use_is_refused_with_the_fix():
    import socket

    from toolkit.errors import TkError
    from toolkit.serving.server import bind

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(TkError) as refused:
            bind("127.0.0.1", port)
        assert str(refused.value).endswith("; choose another --port")  # already on 127.0.0.1: no --host advice
    finally:
        taken.close()


@pytest.mark.parametrize("host, reason", [
    ("some.bad.name.invalid", "--host some.bad.name.invalid: cannot listen there ("),  # the resolver's words vary
    ("192.0.2.1", "--host 192.0.2.1: cannot listen there (Cannot assign requested address): it is not an address "
                  "of this machine. Use --host 127.0.0.1 (this machine only) or --host 0.0.0.0 (every interface; "
                  "then set --token)."),  # TEST-NET-1: no machine's own address
    ("", "--host is empty; give an address"),
])
def test_a_host_this_machine_cannot_listen_on_is_refused_first_in_one_line(single, host, reason):
    """Before the no-token warning a host other than loopback gets: a typo is one line, not a warning to act on
    and then an error."""
    result = tk("serve", single, "--host", host, "--port", 0)
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"Error: {reason}"), line
