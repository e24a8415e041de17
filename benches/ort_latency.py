#!/usr/bin/env python3
"""Peer latency for `vipnas bench`: onnxruntime on an ONNX file, fixed input.
Usage: ort_latency.py MODEL.onnx DTYPE(f32|i32) SHAPE(1x3x256x192) THREADS RUNS
Prints one JSON line: {"median_ms": …, "p90_ms": …, "runs": …}."""
import json
import sys
import time

import numpy as np
import onnxruntime as ort

path, dtype, shape, threads, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
shape = [int(s) for s in shape.split("x")]
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.inter_op_num_threads = 1
sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
rng = np.random.default_rng(0)
x = (rng.integers(0, 255, shape).astype(np.int32) if dtype == "i32" else rng.standard_normal(shape).astype(np.float32))
feed = {sess.get_inputs()[0].name: x}
for _ in range(5):
    sess.run(None, feed)
times = []
for _ in range(runs):
    t = time.perf_counter()
    sess.run(None, feed)
    times.append((time.perf_counter() - t) * 1e3)
times.sort()
print(json.dumps({"median_ms": times[len(times) // 2], "p90_ms": times[int(len(times) * 0.9)], "runs": runs}))
