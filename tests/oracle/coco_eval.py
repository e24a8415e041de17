#!/usr/bin/env python3
"""pycocotools oracle: COCOeval('keypoints') of RESULTS against GT.
Usage: coco_eval.py GT.json RESULTS.json — prints the 10 stats as a JSON list."""
import contextlib
import io
import json
import sys

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[1])
    dt = gt.loadRes(sys.argv[2])
    ev = COCOeval(gt, dt, "keypoints")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
print(json.dumps([float(s) for s in ev.stats]))
