"""PyTorch peer for `vipnas bench train`: builds the same layer graph (the
`Network` JSON vipnas writes) as torch modules and times one training step
(forward with BatchNorm in train mode, MSE against heatmap targets, backward,
Adam), median over the timed steps; with several nets, a sandwich step.

    python train_step.py NET.json[,NET2.json,...] BATCH THREADS WARMUP STEPS
prints `ms_per_step=<median>`.
"""
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def act(name):
    return {
        "relu": nn.ReLU(),
        "h-swish": nn.Hardswish(),
        "h-sigmoid": nn.Hardsigmoid(),
        "sigmoid": nn.Sigmoid(),
    }[name]


class Node(nn.Module):
    def __init__(self, node):
        super().__init__()
        self.inputs = node["inputs"]
        op = node["op"]
        self.kind = next(iter(op)) if isinstance(op, dict) else op
        a = op[self.kind] if isinstance(op, dict) else None
        if self.kind == "conv":
            cls = nn.ConvTranspose2d if a["transposed"] else nn.Conv2d
            self.conv = cls(a["cin"], a["cout"], a["kernel"], a["stride"], a["pad"], groups=a["groups"], bias=a["bias"])
            self.bn = nn.BatchNorm2d(a["cout"]) if a["bn"] else nn.Identity()
            self.act = act(a["act"]) if a["act"] else nn.Identity()
        elif self.kind == "se":
            self.fc1 = nn.Conv2d(a["channels"], a["squeeze"], 1)
            self.fc2 = nn.Conv2d(a["squeeze"], a["channels"], 1)
            self.gate = act(a["gate"])
        elif self.kind == "gc":
            self.mask = nn.Conv2d(a["channels"], 1, 1)
            self.fc1 = nn.Conv2d(a["channels"], a["planes"], 1)
            self.ln = nn.LayerNorm([a["planes"], 1, 1])
            self.fc2 = nn.Conv2d(a["planes"], a["channels"], 1)
        self.args = a

    def forward(self, values):
        x = values[self.inputs[0]]
        k, a = self.kind, self.args
        if k == "conv":
            return self.act(self.bn(self.conv(x)))
        if k == "se":
            e = self.gate(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
            return x * e
        if k == "gc":
            n, c, h, w = x.shape
            attn = torch.softmax(self.mask(x).view(n, h * w), 1).view(n, h * w, 1)
            ctx = torch.bmm(x.view(n, c, h * w), attn).view(n, c, 1, 1)
            return x + self.fc2(F.relu(self.ln(self.fc1(ctx))))
        if k == "sum":
            y = sum(values[i] for i in self.inputs)
            return F.relu(y) if a["relu"] else y
        if k == "max-pool":
            return F.max_pool2d(x, a["kernel"], a["stride"], a["pad"])
        if k == "upsample":
            return F.interpolate(x, scale_factor=a["factor"], mode="nearest")
        raise ValueError(k)


class Net(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.nodes = nn.ModuleList(Node(n) for n in spec["nodes"])

    def forward(self, x):
        values = [x]
        for n in self.nodes:
            values.append(n(values))
        return values[-1]


def main():
    paths, batch, threads, warmup, steps = sys.argv[1].split(","), *map(int, sys.argv[2:6])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    specs = [json.load(open(p)) for p in paths]
    # Several nets: a sandwich step (first = max on the targets, the others on
    # its detached output). Each net holds its own weights here, where vipnas
    # slices one supernet: the same arithmetic, without the slicing copies.
    nets = [Net(s).train() for s in specs]
    inp = specs[0]["input"]
    out = specs[0]["nodes"][-1]["shape"]
    x = torch.randn(batch, inp["c"], inp["h"], inp["w"])
    target = torch.rand(batch, out["c"], out["h"], out["w"])
    opt = torch.optim.Adam([p for n in nets for p in n.parameters()], lr=1e-3, eps=1e-8)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        teacher = nets[0](x)
        loss = F.mse_loss(teacher, target)
        for n in nets[1:]:
            loss = loss + F.mse_loss(n(x), teacher.detach())
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    print(f"ms_per_step={times[len(times) // 2]:.2f} loss={loss.item():.5f}")


if __name__ == "__main__":
    main()
