"""Benchmark `fer api` under load, against `mlflow models serve` of the same model.

Measured in one run, client and servers on 127.0.0.1, on whatever cores the machine gives
(the client's threads share them with the server):

- ``--requests`` requests (default 300) at ``--concurrency`` (default 8), one 640×480 JPEG with
  one face, to ``fer api`` with each of ``--workers`` (default 1 and 2): ``POST /predict``
  (raw bytes) and, with one worker, ``POST /invocations`` (base64 JSON, what MLflow's clients
  send); req/s, p50/p95 latency, errors (any non-200 or a wrong answer); every server in turn,
  ``--rounds`` times (default 2), so that the drifting load of a shared machine hits all alike;
- memory: ``--memory-requests`` (default 3,000) to ``fer api --workers 1``, RSS and USS of the
  server's process tree before the first and after every ``--memory-every`` (1,000) requests;
- ``mlflow models serve`` of the same logged pyfunc (``POST /invocations``, one worker), unless
  ``--skip-mlflow``.

The model is a pyfunc logged exactly as `fer train` logs one, around ``--model DIR`` when given,
else an untrained ``--arch`` (default alexnet, the project's default model): timings do not
depend on the weights. Usage::

    python benchmarks/bench_api.py                       # 300 requests, 3,000 for memory
    python benchmarks/bench_api.py --requests 60 --memory-requests 300 --skip-mlflow  # quick
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("FER_PROGRESS", "0")


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def logged_model(tmp: Path, model: Path | None, arch: str) -> Path:
    """A pyfunc logged as `fer train` logs one (fer.tracking), in a scratch store; its folder."""
    from bench_predict import _cfg, _untrained_model

    from fer import tracking
    from fer.config import TrackingConfig
    from fer.prediction.inference import WEIGHTS
    from fer.prediction.serving import log_arguments

    weights = (model / WEIGHTS) if model else _untrained_model(tmp / "weights", arch) / WEIGHTS
    store = TrackingConfig(uri=f"sqlite:///{tmp}/mlflow.db", artifact_location=tmp / "mlruns",
                           experiment="bench-api")  # fmt: skip
    with tracking.open_run(store, run_name="bench-api") as run:
        uri = run.log_pyfunc(**log_arguments(weights, detector=_cfg().detect.detector()))
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # set by mlflow; the servers get their own
    return tracking.download_model_artifacts(store, uri)


def photo_jpeg() -> bytes:
    """The astronaut (one face) letterboxed into 640×480, JPEG quality 90."""
    import cv2
    from bench_predict import _photo_640x480

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(_photo_640x480(), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 90])  # fmt: skip
    assert ok
    return buf.tobytes()


@contextlib.contextmanager
def server(cmd: list[str], health: str, log: Path, timeout: float = 180) -> Iterator[int]:
    """Start ``cmd`` (its own process group), wait until ``health`` answers 200; yield its pid."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               MLFLOW_DISABLE_TELEMETRY="true")  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=log.parent, start_new_session=True)  # fmt: skip
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{cmd[0]} exited: {log.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{health} not up in {timeout:.0f} s")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(health, timeout=2).status_code == 200:
                        break
                time.sleep(0.5)
            yield proc.pid
        finally:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()


class Load:
    """Requests from ``concurrency`` threads, each with its own keep-alive connection."""

    def __init__(self, url: str, kind: str, jpeg: bytes, concurrency: int) -> None:
        self.url, self.kind, self.concurrency = url, kind, concurrency
        if kind == "predict":
            self.body, self.headers = jpeg, {"Content-Type": "image/jpeg"}
        else:
            doc = {"dataframe_records": [{"image": base64.b64encode(jpeg).decode()}]}
            self.body = json.dumps(doc).encode()
            self.headers = {"Content-Type": "application/json"}
        self.local = threading.local()

    def _one(self, _: int) -> tuple[float, bool]:
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = httpx.Client(timeout=120)
        start = time.perf_counter()
        try:
            resp = client.post(self.url, content=self.body, headers=self.headers)
            ok = resp.status_code == 200 and self._faces(resp.json()) == 1
        except (httpx.HTTPError, ValueError):
            ok = False
        return time.perf_counter() - start, ok

    def _faces(self, doc: dict[str, Any]) -> int:
        if self.kind == "predict":
            return len(doc["faces"])
        row = doc["predictions"][0]
        return len(json.loads(row["faces"])) if row["error"] == "" else -1

    def run(self, n: int) -> dict[str, Any]:
        """``n`` requests; req/s, p50/p95 latency (ms), errors."""
        start = time.perf_counter()
        with ThreadPoolExecutor(self.concurrency) as pool:
            results = list(pool.map(self._one, range(n)))
        wall = time.perf_counter() - start
        lat = sorted(t for t, _ in results)
        return {
            "requests": n,
            "req_per_s": round(n / wall, 1),
            "p50_ms": round(statistics.median(lat) * 1000, 1),
            "p95_ms": round(lat[min(n - 1, int(0.95 * n))] * 1000, 1),
            "errors": sum(1 for _, ok in results if not ok),
            "seconds": round(wall, 1),
            "load": _load(),
        }


def tree_memory(pid: int) -> dict[str, float]:
    """RSS and USS (MiB) summed over ``pid`` and its descendants."""
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    rss = uss = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            info = p.memory_full_info()
            rss, uss = rss + info.rss, uss + info.uss
    return {"rss_mib": round(rss / 2**20, 1), "uss_mib": round(uss / 2**20, 1)}


def fer_api(model: Path, port: int, workers: int) -> list[str]:
    return [str(BIN / "fer"), "--params", str(REPO / "params.yaml"), "api", "--model",
            str(model), "--port", str(port), "--workers", str(workers)]  # fmt: skip


def mlflow_serve(model: Path, port: int) -> list[str]:
    return [str(BIN / "mlflow"), "models", "serve", "-m", str(model), "--host", "127.0.0.1",
            "-p", str(port), "-w", "1", "--env-manager", "local"]  # fmt: skip


def bench_throughput(args: argparse.Namespace, model: Path, jpeg: bytes, tmp: Path) -> list[dict]:
    """``fer api`` with each worker count, and mlflow's server, all started at once and loaded
    in turn for ``--rounds`` rounds (the other servers idle meanwhile): on a shared machine the
    load of other jobs drifts, and interleaving spreads that drift over every server alike."""
    from fer.ui import free_port

    loads: list[tuple[str, str, Load]] = []
    with contextlib.ExitStack() as stack:
        for workers in args.workers:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            stack.enter_context(
                server(fer_api(model, port, workers), f"{url}/health", tmp / f"api{workers}.log")
            )
            for kind in ("predict", "invocations") if workers == 1 else ("predict",):
                loads.append((f"fer api --workers {workers}", f"/{kind}",
                              Load(f"{url}/{kind}", kind, jpeg, args.concurrency)))  # fmt: skip
        if not args.skip_mlflow:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            stack.enter_context(server(mlflow_serve(model, port), f"{url}/ping", tmp / "ml.log"))
            load = Load(f"{url}/invocations", "invocations", jpeg, args.concurrency)
            loads.append(("mlflow models serve -w 1", "/invocations", load))
        for _, _, load in loads:
            load.run(args.warmup)
        rows = []
        for rnd in range(1, args.rounds + 1):
            for name, endpoint, load in loads:
                rows.append({"round": rnd, "server": name, "endpoint": endpoint,
                             **load.run(args.requests)})  # fmt: skip
                print(_row(rows[-1]), flush=True)
    return rows


def bench_memory(args: argparse.Namespace, model: Path, jpeg: bytes, tmp: Path) -> list[dict]:
    """Memory of ``fer api --workers 1`` over ``--memory-requests`` requests."""
    from fer.ui import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    samples = []
    with server(fer_api(model, port, 1), f"{url}/health", tmp / "api_memory.log") as pid:
        load = Load(f"{url}/predict", "predict", jpeg, args.concurrency)
        samples.append({"after_requests": 0, **tree_memory(pid), "errors": 0, "load": _load()})
        print(samples[-1], flush=True)
        done = 0
        while done < args.memory_requests:
            n = min(args.memory_every, args.memory_requests - done)
            stats = load.run(n)
            done += n
            samples.append({"after_requests": done, **tree_memory(pid),
                             "errors": stats["errors"], "req_per_s": stats["req_per_s"],
                             "load": _load()})  # fmt: skip
            print(samples[-1], flush=True)
    return samples


def _row(r: dict[str, Any]) -> str:
    return (f"round {r['round']}  {r['server']:<26} {r['endpoint']:<13} "
            f"{r['req_per_s']:>6.1f} req/s  "
            f"p50 {r['p50_ms']:>6.1f} ms  p95 {r['p95_ms']:>6.1f} ms  errors {r['errors']}  "
            f"({r['requests']} in {r['seconds']} s; {r['load']})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a trained model folder (default: untrained)")
    parser.add_argument("--arch", default="alexnet", help="untrained architecture to time")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per server")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--memory-requests", type=int, default=3000)
    parser.add_argument("--memory-every", type=int, default=1000)
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the results here (JSON)")
    args = parser.parse_args()
    print("$ python " + shlex.join(sys.argv), flush=True)
    print(f"{os.cpu_count()} CPUs; {_load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_api_") as name:
        tmp = Path(name)
        model = logged_model(tmp, args.model, args.arch)
        jpeg = photo_jpeg()
        print(f"model: {model} ({args.model or 'untrained ' + args.arch}); "
              f"photo: 640x480 JPEG, {len(jpeg)} bytes", flush=True)  # fmt: skip
        throughput = bench_throughput(args, model, jpeg, tmp)
        memory = bench_memory(args, model, jpeg, tmp) if args.memory_requests else []
    print(f"\nthroughput (concurrency {args.concurrency}):")
    for r in throughput:
        print("  " + _row(r))
    if memory:
        print("memory of fer api --workers 1 (server process tree):")
        for m in memory:
            print(f"  after {m['after_requests']:>5} requests: RSS {m['rss_mib']:7.1f} MiB, "
                  f"USS {m['uss_mib']:7.1f} MiB  ({m['load']})")  # fmt: skip
    print(_load())
    if args.out:
        args.out.write_text(json.dumps({"argv": sys.argv, "throughput": throughput,
                                        "memory": memory}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
