#!/usr/bin/env python3
"""LSP-Extended (LSPet: Johnson & Everingham, CVPR 2011; for research purposes) to
COCO person keypoints: one person per image, 12 of its 14 joints mapped to COCO-17
(neck and head top have no COCO joint; the five face points are left unlabelled for
`vipnas data fill`). The box: the labelled joints, head top included, plus 10 % of the
size per side, clipped to the image (the rule of our other labels).

    lspet-to-coco.py LSPET_DIR OUT.json      (LSPET_DIR holds joints.mat and images/)

Coordinates: LSPet's are MATLAB's (the first pixel's centre is 1); COCO's first pixel
centre is 0, so 1 is subtracted. A joint outside the image is left unlabelled."""
import json, os, sys

import numpy as np
import scipy.io
from PIL import Image

# LSP joint order → COCO-17 index (None: no COCO joint).
LSP_TO_COCO = [16, 14, 12, 11, 13, 15, 10, 8, 6, 5, 7, 9, None, None]


def main(src, out):
    joints = scipy.io.loadmat(os.path.join(src, "joints.mat"))["joints"]
    assert joints.shape == (14, 3, 10000), f"joints.mat: shape {joints.shape}, expected (14, 3, 10000)"
    images, annotations, skipped = [], [], 0
    for i in range(joints.shape[2]):
        name = f"im{i + 1:05d}.jpg"
        path = os.path.join(src, "images", name)
        with Image.open(path) as im:
            w, h = im.size
        j = joints[:, :, i]
        xy = j[:, :2] - 1.0
        ok = (j[:, 2] > 0) & (xy[:, 0] >= 0) & (xy[:, 1] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] <= h - 1)
        kps = [0.0] * 51
        for l, c in enumerate(LSP_TO_COCO):
            if c is not None and ok[l]:
                kps[3 * c:3 * c + 3] = [float(xy[l, 0]), float(xy[l, 1]), 2.0]
        n = sum(1 for v in kps[2::3] if v > 0)
        images.append({"id": i + 1, "file_name": f"images/{name}", "width": w, "height": h})
        if n == 0 or ok.sum() < 2:
            skipped += 1
            continue
        (x0, y0), (x1, y1) = xy[ok].min(0), xy[ok].max(0)
        bw, bh = x1 - x0, y1 - y0
        bx0, by0 = max(x0 - 0.1 * bw, 0.0), max(y0 - 0.1 * bh, 0.0)
        bx1, by1 = min(x1 + 0.1 * bw, w - 1.0), min(y1 + 0.1 * bh, h - 1.0)
        box = [float(bx0), float(by0), float(max(bx1 - bx0, 1.0)), float(max(by1 - by0, 1.0))]
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "keypoints": kps,
                            "num_keypoints": n, "bbox": box, "area": box[2] * box[3] * 0.53, "iscrowd": 0})
    categories = [{"id": 1, "name": "person"}]
    info = {"description": "LSP-Extended (Johnson & Everingham, CVPR 2011), 12 of 14 joints as COCO-17",
            "terms": "for research purposes; cite Johnson & Everingham, Learning Effective Human Pose "
                     "Estimation from Inaccurate Annotation, CVPR 2011"}
    with open(out, "w") as f:
        json.dump({"info": info, "images": images, "annotations": annotations, "categories": categories}, f)
    print(f"wrote {out}: {len(images)} images, {len(annotations)} people ({skipped} without two labelled joints)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
