"""tk serve against what a user would write in 20 lines (FastAPI + transformers.pipeline, one request at a time).

    TK_DATA_DIR=../shared/data python benchmarks/serve_throughput.py RUN [--requests 10000] [--baseline-requests 2000] [--clients 32]

Both servers serve RUN's model on 127.0.0.1, one process each, started here one after the other. Each gets:
200 warm-up requests; then 1 client sending 300 requests in turn (p50 and p99 latency of one request alone);
then CLIENTS concurrent clients (threads, each on its own keep-alive connection) sending one short text per
request (Sentiment140's manual test tweets, in turn) until REQUESTS are done: requests/s, errors, and the
server's resident memory after the warm-up, at each tenth of the requests and at the end. The clients run in
this process and share the CPU with the server, equally for both servers: the ratio is the figure to read.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

DATA = Path(os.environ.get("TK_DATA_DIR", Path(__file__).resolve().parent.parent.parent / "shared/data"))
SENTIMENT140 = DATA / "sentiment140/testdata.manual.2009.06.14.csv"

BASELINE = '''
import sys
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline
import uvicorn

classifier = pipeline("text-classification", model=sys.argv[1], device="cpu")
app = FastAPI()

class Request(BaseModel):
    text: str

@app.post("/predict")
async def predict(request: Request):  # async: the pipeline runs on the event loop, one request at a time
    return classifier(request.text)[0]

@app.get("/health")
async def health():
    return {"status": "alive"}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
'''


def tweets() -> list[str]:
    with open(SENTIMENT140, encoding="latin-1", newline="") as handle:
        return [row[5] for row in csv.reader(handle)]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], port: int, env: dict | None = None) -> subprocess.Popen:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{command[:3]} exited: {process.stderr.read()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    sys.exit(f"{command[:3]} did not start")


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def post(connection: http.client.HTTPConnection, text: str) -> bool:
    connection.request("POST", "/predict", body=json.dumps({"text": text}),
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    return response.status == 200


def measure(name: str, port: int, pid: int, texts: list[str], requests: int, clients: int) -> dict:
    one = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for i in range(200):
        post(one, texts[i % len(texts)])
    memory_after_warm_up = rss_mib(pid)
    latencies = []
    for i in range(300):
        started = time.perf_counter()
        post(one, texts[i % len(texts)])
        latencies.append(time.perf_counter() - started)
    latencies.sort()
    counter, errors, lock = iter(range(requests)), [0], threading.Lock()
    step, memory = max(1, requests // 10), []  # resident memory at each tenth of the requests: growth or a plateau

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            if i % step == 0:
                memory.append((i, round(rss_mib(pid), 1)))
            try:
                ok = post(connection, texts[i % len(texts)])
            except OSError:
                ok = False
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            if not ok:
                with lock:
                    errors[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    result = {"server": name, "requests": requests, "errors": errors[0], "seconds": round(seconds, 1),
              "requests_per_second": round(requests / seconds, 1),
              "p50_ms": round(1000 * statistics.median(latencies), 1),
              "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
              "rss_after_warm_up_mib": round(memory_after_warm_up, 1), "rss_by_tenth_mib": [mib for _, mib in sorted(memory)],
              "rss_at_end_mib": round(rss_mib(pid), 1)}
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--baseline-requests", type=int, default=2_000, help="the baseline is slower")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--serve-option", action="append", default=[], metavar="OPTION",
                        help="passed to tk serve, e.g. --serve-option=--max-batch=16 (repeatable)")
    args = parser.parse_args()
    texts = tweets()
    print(f"{len(texts)} tweets, {statistics.mean(map(len, texts)):.0f} characters on average; "
          f"{args.clients} concurrent clients", flush=True)
    results = []
    port = free_port()
    tk = start([str(Path(sys.executable).with_name("tk")), "serve", str(args.run), "--port", str(port),
                *args.serve_option], port)
    try:
        results.append(measure("tk serve", port, tk.pid, texts, args.requests, args.clients))
    finally:
        tk.terminate()
        tk.wait()
    if not args.skip_baseline:
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
            script.write(BASELINE)
        port = free_port()
        baseline = start([sys.executable, script.name, str(args.run / "model"), str(port)], port)
        try:
            results.append(measure("FastAPI + pipeline", port, baseline.pid, texts, args.baseline_requests,
                                   args.clients))
        finally:
            baseline.terminate()
            baseline.wait()
            os.unlink(script.name)
        print(f"throughput ratio tk serve / baseline: "
              f"{results[0]['requests_per_second'] / results[1]['requests_per_second']:.2f}x")


if __name__ == "__main__":
    main()
