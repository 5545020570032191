"""PyTorch reference for bench/conv: the same three training steps, timed on request.

Not part of the build or the tests (the project needs no Python). bench/conv --torch starts it as
a coprocess and interleaves it with its own rounds, so that both engines see the same machine
noise:

    python3 bench/reference/conv_torch.py --threads 2

It reads one request per line on stdin, "<model> <steps>", runs that many timed training steps
(forward, backward and SGD's update; after untimed warm-up steps the first time a model is seen)
in each memory format it tries, and answers one line on stdout: "<model> <best ms per step>
<format>". The models are those of bench/conv.cpp:

    cnn        the Fashion-MNIST CNN of examples/fashion_mnist --model cnn, batch 128
    resnet     a ResNet basic block, 64 channels, 56x56, batch 8
    depthwise  a MobileNet depthwise-separable block, 32 -> 64 channels, 56x56, batch 8

PyTorch's best configuration: both memory formats (NCHW, and channels_last, which oneDNN often
prefers) are timed and the faster one is reported; --threads sets torch.set_num_threads.
"""
import argparse
import statistics
import sys
import time

import torch
import torch.nn as tnn
import torch.nn.functional as F


class Cnn(tnn.Module):
    def __init__(self, c1=32, c2=64, p=0.25):
        super().__init__()
        self.conv1, self.conv2 = tnn.Conv2d(1, c1, 3, padding=1, bias=False), tnn.Conv2d(c1, c2, 3, padding=1, bias=False)
        self.norm1, self.norm2 = tnn.BatchNorm2d(c1), tnn.BatchNorm2d(c2)
        self.hidden, self.out = tnn.Linear(c2 * 49, 128), tnn.Linear(128, 10)
        self.p = p

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.norm1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.norm2(self.conv2(x))), 2)
        x = F.dropout(torch.flatten(x, 1), self.p, self.training)
        return self.out(F.dropout(F.relu(self.hidden(x)), self.p, self.training))


class BasicBlock(tnn.Module):
    def __init__(self, c=64):
        super().__init__()
        self.conv1, self.conv2 = tnn.Conv2d(c, c, 3, padding=1, bias=False), tnn.Conv2d(c, c, 3, padding=1, bias=False)
        self.norm1, self.norm2 = tnn.BatchNorm2d(c), tnn.BatchNorm2d(c)

    def forward(self, x):
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(y)) + x)


class DepthwiseSeparable(tnn.Module):
    def __init__(self, c_in=32, c_out=64):
        super().__init__()
        self.depthwise = tnn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False)
        self.pointwise = tnn.Conv2d(c_in, c_out, 1, bias=False)
        self.norm1, self.norm2 = tnn.BatchNorm2d(c_in), tnn.BatchNorm2d(c_out)

    def forward(self, x):
        return F.relu(self.norm2(self.pointwise(F.relu(self.norm1(self.depthwise(x))))))


def make(model):
    """The module, its input batch, and the loss the step differentiates."""
    if model == "cnn":
        net, x = Cnn(), torch.rand(128, 1, 28, 28)
        y = torch.randint(0, 10, (128,))
        return net, x, lambda out: F.cross_entropy(out, y)
    if model == "resnet":
        return BasicBlock(), torch.randn(8, 64, 56, 56), lambda out: out.square().mean()
    if model == "depthwise":
        return DepthwiseSeparable(), torch.randn(8, 32, 56, 56), lambda out: out.square().mean()
    raise ValueError(f"unknown model {model}")


class Timed:
    """One model in one memory format, warmed up once."""

    def __init__(self, model, channels_last):
        torch.manual_seed(0)
        self.net, self.x, self.loss = make(model)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.net.train()
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=1e-3, momentum=0.9)
        for _ in range(3):
            self.step()

    def step(self):
        self.optimizer.zero_grad(set_to_none=True)
        self.loss(self.net(self.x)).backward()
        self.optimizer.step()

    def median_ms(self, steps):
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            self.step()
            times.append(1000 * (time.perf_counter() - start))
        return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    timed = {}
    print(f"ready torch {torch.__version__} threads {torch.get_num_threads()}", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        model, steps = words[0], int(words[1])
        best = None
        for fmt in ("nchw", "channels_last"):
            key = (model, fmt)
            if key not in timed:
                timed[key] = Timed(model, fmt == "channels_last")
            ms = timed[key].median_ms(steps)
            if best is None or ms < best[0]:
                best = (ms, fmt)
        print(f"{model} {best[0]:.4f} {best[1]}", flush=True)


if __name__ == "__main__":
    main()
