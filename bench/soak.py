"""Soak run: many traced calls, half of them streams, many abandoned midway.

Prints memory (tracemalloc: current and peak, sampled along the way) and the number of traces
MLflow still holds open at the end, which must be zero. Runs offline: the network is replaced
by the ``before-send`` stub of ``bedrock_trace.testing``, and traces go to the in-memory
capture, cleared as it fills.

    python bench/soak.py [--calls 20000] [--threads 4]
"""

from __future__ import annotations

import argparse
import gc
import random
import threading
import time
import tracemalloc

import boto3
import mlflow
from botocore.config import Config

import bedrock_trace
from bedrock_trace.testing import (
    HttpStub,
    capture_traces,
    chunk_event,
    converse_response,
    converse_stream_messages,
    flush,
)

MESSAGES = [{"role": "user", "content": [{"text": "Hello, soak"}]}]
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"


def _worker(session: boto3.Session, calls: int, seed: int, done: list[int]) -> None:
    rng = random.Random(seed)
    client = session.client(
        "bedrock-runtime", config=Config(retries={"mode": "standard", "total_max_attempts": 1})
    )
    stream_messages = converse_stream_messages("Soak " * 20, pieces=10)
    chunks = [chunk_event({"generation": "x", "generation_token_count": i}) for i in range(10)]
    with HttpStub(client, keep_requests=False) as http:
        for index in range(calls):
            kind = rng.random()
            with mlflow.start_span(f"soak-{seed}-{index}"):
                if kind < 0.4:
                    http.add(converse_response("ok"))
                    client.converse(modelId=CLAUDE, messages=MESSAGES)
                elif kind < 0.7:
                    http.add_stream(stream_messages)
                    stream = client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"]
                    stop = rng.randrange(0, len(stream_messages) + 1)
                    for seen, _event in enumerate(stream):
                        if seen == stop:
                            break  # abandoned midway
                else:
                    http.add_stream(chunks)
                    response = client.invoke_model_with_response_stream(
                        modelId="meta.llama3-8b-instruct-v1:0", body=b'{"prompt": "x"}'
                    )
                    if rng.random() < 0.5:
                        list(response["body"])
                    # else: dropped unread
            done[0] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    session = boto3.Session(
        aws_access_key_id="AKIASOAKSOAKSOAK", aws_secret_access_key="soak", region_name="us-east-1"
    )
    bedrock_trace.register(session)
    tracemalloc.start()
    samples = []
    started = time.perf_counter()
    with capture_traces() as capture:
        done = [0]
        per_thread = args.calls // args.threads
        threads = [
            threading.Thread(target=_worker, args=(session, per_thread, seed, done))
            for seed in range(args.threads)
        ]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            time.sleep(1.0)
            capture.clear()
            gc.collect()
            current, peak = tracemalloc.get_traced_memory()
            samples.append((done[0], current))
            mib = 2**20
            print(f"  {done[0]:>6} calls  now {current / mib:7.2f} MiB  peak {peak / mib:7.2f} MiB")
        for thread in threads:
            thread.join()
        gc.collect()
        flush()
        capture.clear()
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
        open_traces = capture.open_traces()
    elapsed = time.perf_counter() - started
    first = samples[len(samples) // 4][1] if samples else current
    print(f"calls: {done[0]} in {elapsed:.1f} s ({args.threads} threads)")
    print(
        f"memory: current {current / 2**20:.2f} MiB, peak {peak / 2**20:.2f} MiB, "
        f"growth from the first quarter's sample {(current - first) / 2**20:+.2f} MiB"
    )
    print(f"open traces at the end: {open_traces}")
    if open_traces:
        raise SystemExit("FAIL: traces left open")


if __name__ == "__main__":
    main()
