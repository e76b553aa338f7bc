"""PyTorch reference for rnnlab's wavenet: makemore part 5's notebook code.

The layers, model, data split and training loop below are the lecture's
("Building makemore Part 5: Building a WaveNet", Karpathy), kept as written
(Python classes, explicit BatchNorm maths, SGD by hand) so that timings compare
Rust with PyTorch running the lecture's Python.

  python scripts/wavenet_reference.py                    # 200,000 steps, prints the losses
  python scripts/wavenet_reference.py --steps 5000 --json out.json
  python scripts/wavenet_reference.py --bench 5000 --rust target/release/rnnlab
      # times N steps here and N steps of `rnnlab train --model wavenet`,
      # then prints both ms/step and the ratio (what `make bench-wavenet` runs)
  python scripts/wavenet_reference.py --golden           # values the Rust tests quote
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = os.path.join(HERE, "..", "data", "names.txt")


# -----------------------------------------------------------------------------
# the lecture's layers


class Linear:
    def __init__(self, fan_in, fan_out, bias=True):
        self.weight = torch.randn((fan_in, fan_out)) / fan_in**0.5  # note: kaiming init
        self.bias = torch.zeros(fan_out) if bias else None

    def __call__(self, x):
        self.out = x @ self.weight
        if self.bias is not None:
            self.out += self.bias
        return self.out

    def parameters(self):
        return [self.weight] + ([] if self.bias is None else [self.bias])


class BatchNorm1d:
    def __init__(self, dim, eps=1e-5, momentum=0.1):
        self.eps = eps
        self.momentum = momentum
        self.training = True
        # parameters (trained with backprop)
        self.gamma = torch.ones(dim)
        self.beta = torch.zeros(dim)
        # buffers (trained with a running 'momentum update')
        self.running_mean = torch.zeros(dim)
        self.running_var = torch.ones(dim)

    def __call__(self, x):
        # calculate the forward pass
        if self.training:
            if x.ndim == 2:
                dim = 0
            elif x.ndim == 3:
                dim = (0, 1)
            xmean = x.mean(dim, keepdim=True)  # batch mean
            xvar = x.var(dim, keepdim=True)  # batch variance
        else:
            xmean = self.running_mean
            xvar = self.running_var
        xhat = (x - xmean) / torch.sqrt(xvar + self.eps)  # normalize to unit variance
        self.out = self.gamma * xhat + self.beta
        # update the buffers
        if self.training:
            with torch.no_grad():
                self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * xmean
                self.running_var = (1 - self.momentum) * self.running_var + self.momentum * xvar
        return self.out

    def parameters(self):
        return [self.gamma, self.beta]


class Tanh:
    def __call__(self, x):
        self.out = torch.tanh(x)
        return self.out

    def parameters(self):
        return []


class Embedding:
    def __init__(self, num_embeddings, embedding_dim):
        self.weight = torch.randn((num_embeddings, embedding_dim))

    def __call__(self, IX):
        self.out = self.weight[IX]
        return self.out

    def parameters(self):
        return [self.weight]


class FlattenConsecutive:
    def __init__(self, n):
        self.n = n

    def __call__(self, x):
        B, T, C = x.shape
        x = x.view(B, T // self.n, C * self.n)
        if x.shape[1] == 1:
            x = x.squeeze(1)
        self.out = x
        return self.out

    def parameters(self):
        return []


class Sequential:
    def __init__(self, layers):
        self.layers = layers

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        self.out = x
        return self.out

    def parameters(self):
        # get parameters of all layers and stretch them out into one list
        return [p for layer in self.layers for p in layer.parameters()]


# -----------------------------------------------------------------------------
# data


def build_dataset(words, stoi, block_size):
    X, Y = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + ".":
            ix = stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]  # crop and append
    return torch.tensor(X), torch.tensor(Y)


def load_data(block_size=8):
    words = open(NAMES, "r").read().splitlines()
    chars = sorted(list(set("".join(words))))
    stoi = {s: i + 1 for i, s in enumerate(chars)}
    stoi["."] = 0
    random.seed(42)
    random.shuffle(words)
    n1 = int(0.8 * len(words))
    n2 = int(0.9 * len(words))
    return (
        build_dataset(words[:n1], stoi, block_size),  # 80%
        build_dataset(words[n1:n2], stoi, block_size),  # 10%
        build_dataset(words[n2:], stoi, block_size),  # 10%
        len(stoi),
    )


def build_model(vocab_size, n_embd=24, n_hidden=128):
    model = Sequential([
        Embedding(vocab_size, n_embd),
        FlattenConsecutive(2), Linear(n_embd * 2, n_hidden, bias=False), BatchNorm1d(n_hidden), Tanh(),
        FlattenConsecutive(2), Linear(n_hidden * 2, n_hidden, bias=False), BatchNorm1d(n_hidden), Tanh(),
        FlattenConsecutive(2), Linear(n_hidden * 2, n_hidden, bias=False), BatchNorm1d(n_hidden), Tanh(),
        Linear(n_hidden, vocab_size),
    ])
    # parameter init
    with torch.no_grad():
        model.layers[-1].weight *= 0.1  # last layer make less confident
    parameters = model.parameters()
    for p in parameters:
        p.requires_grad = True
    return model, parameters


def train(steps, seed=42, quiet=False):
    (Xtr, Ytr), (Xdev, Ydev), (Xte, Yte), vocab_size = load_data()
    torch.manual_seed(seed)
    model, parameters = build_model(vocab_size)
    if not quiet:
        print(f"{sum(p.nelement() for p in parameters)} parameters, torch threads {torch.get_num_threads()}")

    max_steps = steps
    batch_size = 32
    lossi = []
    start = time.perf_counter()
    for i in range(max_steps):
        # minibatch construct
        ix = torch.randint(0, Xtr.shape[0], (batch_size,))
        Xb, Yb = Xtr[ix], Ytr[ix]  # batch X,Y
        # forward pass
        logits = model(Xb)
        loss = F.cross_entropy(logits, Yb)  # loss function
        # backward pass
        for p in parameters:
            p.grad = None
        loss.backward()
        # update: simple SGD (the lecture: 0.1 if i < 150000 else 0.01)
        lr = 0.1 if i < max_steps * 3 // 4 else 0.01  # step learning rate decay
        for p in parameters:
            p.data += -lr * p.grad
        # track stats
        if not quiet and i % 10000 == 0:  # print every once in a while
            print(f"{i:7d}/{max_steps:7d}: {loss.item():.4f}")
        lossi.append(loss.log10().item())
    seconds = time.perf_counter() - start

    # put layers into eval mode (needed for batchnorm especially)
    for layer in model.layers:
        layer.training = False

    @torch.no_grad()
    def split_loss(x, y):
        logits = model(x)
        return F.cross_entropy(logits, y).item()

    return {
        "steps": steps,
        "train_seconds": seconds,
        "ms_per_step": 1e3 * seconds / steps,
        "threads": torch.get_num_threads(),
        "train_loss": split_loss(Xtr, Ytr),
        "val_loss": split_loss(Xdev, Ydev),
        "test_loss": split_loss(Xte, Yte),
        "torch": torch.__version__,
    }


def bench(steps, rust, threads):
    py = train(steps, quiet=True)
    with tempfile.TemporaryDirectory() as out:
        run = os.path.join(out, "run")
        cmd = [rust, "--device", "cpu", "train", "--model", "wavenet", "--steps", str(steps), "--out", run]
        if threads:
            cmd += ["--threads", str(threads)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        rs = json.load(open(os.path.join(run, "summary.json")))
    print(f"wavenet, {steps} steps of 32 on the CPU (training loop only):")
    print(f"  PyTorch {py['torch']} (lecture's Python, {py['threads']} threads): {py['ms_per_step']:.3f} ms/step")
    print(f"  rnnlab ({rs['threads']} thread(s)):                  {rs['ms_per_step']:.3f} ms/step")
    print(f"  ratio PyTorch / rnnlab: {py['ms_per_step'] / rs['ms_per_step']:.2f}x")


def golden():
    random.seed(42)
    print("getrandbits(32) x3:", [random.getrandbits(32) for _ in range(3)])
    random.seed(42)
    lst = list(range(10))
    random.shuffle(lst)
    print("shuffle(range(10)):", lst)
    words = open(NAMES, "r").read().splitlines()
    random.seed(42)
    random.shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    print("train[:5]", words[:5], "val[0]", words[n1], "test[0]", words[n2], "test[-3:]", words[-3:])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    ap.add_argument("--json", help="write the summary here")
    ap.add_argument("--bench", type=int, metavar="N", help="time N steps here and in --rust")
    ap.add_argument("--rust", default="target/release/rnnlab")
    ap.add_argument("--rust-threads", type=int, default=0, help="rnnlab --threads (0: its default)")
    ap.add_argument("--golden", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.golden:
        golden()
    elif args.bench:
        bench(args.bench, args.rust, args.rust_threads)
    else:
        summary = train(args.steps, args.seed)
        print(json.dumps(summary, indent=2))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(summary, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
