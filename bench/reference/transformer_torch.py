"""PyTorch reference for bench/transformer: the same GPT training step, timed the same way.

Not part of the build or the tests (the project needs no Python). It exists so that the
figure the issue compares against can be measured side by side on the machine at hand:
bench/transformer --torch runs it after its own steps, with the same configurations, --steps,
--warmup and thread count, once in PyTorch's default setting and once with GOMP_SPINCOUNT=0,
and reports the faster beside its own figures. By hand:

    GOMP_SPINCOUNT=0 OMP_NUM_THREADS=2 python3 bench/reference/transformer_torch.py [--big] [--steps 9]
        [--warmup 3] [--threads 2] [--json F]

The model is nn::GPT of nn/transformer.h: learned positions, pre-norm blocks (LayerNorm eps 1e-5),
4·d² attention projections with biases, GELU (tanh form) feed-forward, dropout 0.1 on the
embeddings, the attention probabilities, the feed-forward's hidden layer and every residual
branch, a final LayerNorm and a bias-free head; cross-entropy; AdamW (lr 1e-4, weight decay 0.01).
Attention is timed both written out (matmul, softmax, matmul: what the engine's user writes) and
through F.scaled_dot_product_attention (PyTorch's fused kernel); the faster is PyTorch's best.

JSON keys, per configuration (small, and big with --big): small_torch_ms_per_step (the faster of
the two), small_torch_plain_attention_ms_per_step, small_torch_sdpa_ms_per_step; and
torch_version, threads.
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as tnn
import torch.nn.functional as F


class Block(tnn.Module):
    def __init__(self, d, heads, d_ff, p, fused):
        super().__init__()
        self.heads, self.p, self.fused = heads, p, fused
        self.norm1, self.norm2 = tnn.LayerNorm(d), tnn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (tnn.Linear(d, d) for _ in range(4))
        self.up, self.down = tnn.Linear(d, d_ff), tnn.Linear(d_ff, d)

    def attention(self, x):
        b, t, d = x.shape
        split = lambda y: y.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        if self.fused:
            a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.p if self.training else 0.0, is_causal=True)
        else:
            s = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
            s = s.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
            a = F.dropout(s.softmax(-1), self.p, self.training) @ v
        return self.o(a.transpose(1, 2).reshape(b, t, d))

    def forward(self, x):
        x = x + F.dropout(self.attention(self.norm1(x)), self.p, self.training)
        h = F.dropout(F.gelu(self.up(self.norm2(x)), approximate="tanh"), self.p, self.training)
        return x + F.dropout(self.down(h), self.p, self.training)


class GPT(tnn.Module):
    def __init__(self, vocab, d, heads, d_ff, layers, seq, p, fused):
        super().__init__()
        self.tokens, self.positions = tnn.Embedding(vocab, d), tnn.Embedding(seq, d)
        self.blocks = tnn.ModuleList(Block(d, heads, d_ff, p, fused) for _ in range(layers))
        self.norm, self.head, self.p = tnn.LayerNorm(d), tnn.Linear(d, vocab, bias=False), p

    def forward(self, ids):
        x = F.dropout(self.tokens(ids) + self.positions(torch.arange(ids.shape[1])), self.p, self.training)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def median_ms(config, fused, warmup, steps):
    name, d, heads, d_ff, layers, seq, batch = config
    torch.manual_seed(1)
    model = GPT(128, d, heads, d_ff, layers, seq, 0.1, fused)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    ids = torch.randint(0, 128, (batch, seq))
    targets = torch.randint(0, 128, (batch, seq))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(ids).reshape(-1, 128), targets.reshape(-1))
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--big", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    configs = [("small", 128, 4, 512, 2, 64, 32)]
    if args.big:
        configs.append(("big", 512, 8, 2048, 4, 256, 8))
    report = {"torch_version": torch.__version__, "threads": args.threads}
    for config in configs:
        plain = median_ms(config, False, args.warmup, args.steps)
        fused = median_ms(config, True, args.warmup, args.steps)
        print(f"{config[0]}: written-out attention {plain:.2f} ms/step, scaled_dot_product_attention {fused:.2f} ms/step")
        report[f"{config[0]}_torch_ms_per_step"] = min(plain, fused)
        report[f"{config[0]}_torch_plain_attention_ms_per_step"] = plain
        report[f"{config[0]}_torch_sdpa_ms_per_step"] = fused
    print(json.dumps(report, indent=2, sort_keys=True))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
