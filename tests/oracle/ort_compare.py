#!/usr/bin/env python3
"""Oracle for the ONNX writer: for every case in DIR/cases.json, check the model
with onnx.checker (full check, with shape inference), run it in onnxruntime on
the saved input and compare with the saved tract output. Exit 1 on any failure.

cases.json: [{"name", "input_shape", "output_shape", "tol"}], files
NAME.onnx, NAME.input.f32, NAME.tract.f32 (raw little-endian float32).
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def main(d: Path) -> int:
    cases = json.loads((d / "cases.json").read_text())
    failures = 0
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    for c in cases:
        name = c["name"]
        path = d / f"{name}.onnx"
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        x = np.fromfile(d / f"{name}.input.f32", dtype="<f4").reshape(c["input_shape"])
        ours = np.fromfile(d / f"{name}.tract.f32", dtype="<f4").reshape(c["output_shape"])
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        (ref,) = sess.run(None, {sess.get_inputs()[0].name: x})
        if ref.shape != ours.shape:
            print(f"FAIL {name}: onnxruntime shape {ref.shape} vs tract {ours.shape}")
            failures += 1
            continue
        diff = float(np.abs(ref - ours).max())
        scale = float(np.abs(ref).max())
        ok = diff <= c["tol"]
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: checker ok, max|ort-tract|={diff:.3e} (tol {c['tol']:.0e}), max|out|={scale:.3f}, opset={model.opset_import[0].version}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
