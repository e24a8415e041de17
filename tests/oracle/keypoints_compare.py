#!/usr/bin/env python3
"""Oracle for the runtime: run the same model inputs through onnxruntime and
compare keypoints, mapped to image pixels with the same affine maps, with
ours. DIR/cases.json: {"model", "input_shape", "dtype", "kind", "frames":
[{"input", "affine": [a,b,c,d,e,f], "keypoints": [[x,y,s]*17]}]}; inputs are raw
little-endian files. Prints the max distance; exits 1 above --tol pixels."""
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort


def main(d: Path, tol: float) -> int:
    spec = json.loads((d / "cases.json").read_text())
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(spec["model"], opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    dtype = {"i32": "<i4", "f32": "<f4"}[spec["dtype"]]
    shape = spec["input_shape"]
    worst, worst_frame = 0.0, -1
    for i, f in enumerate(spec["frames"]):
        x = np.fromfile(d / f["input"], dtype=dtype).reshape(shape)
        (out,) = sess.run(None, {name: x})
        if spec["kind"] != "keypoints":
            raise SystemExit("only keypoint outputs are compared here")
        h, w = (shape[1], shape[2])
        o = out.reshape(17, 3)
        u, v = o[:, 1] * w, o[:, 0] * h
        a, b, c, dd, e, ff = f["affine"]
        xs, ys = a * u + b * v + c - 0.5, dd * u + e * v + ff - 0.5
        ours = np.array(f["keypoints"], dtype=np.float64)
        dist = np.hypot(xs - ours[:, 0], ys - ours[:, 1]).max()
        score = np.abs(o[:, 2] - ours[:, 2]).max()
        if dist > worst:
            worst, worst_frame = dist, i
        if score > 1e-3:
            print(f"FAIL frame {i}: score differs by {score}")
            return 1
    print(f"frames={len(spec['frames'])} max_keypoint_distance_px={worst:.4f} (frame {worst_frame}) tol={tol}")
    return 0 if worst <= tol else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.5))
