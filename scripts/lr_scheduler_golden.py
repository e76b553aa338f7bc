"""Golden learning rates for crates/train/src/schedule.rs tests.

Steps PyTorch's StepLR and CosineAnnealingWarmRestarts once per epoch and
prints the learning rate in effect at each epoch (optimizer.param_groups[0]).
Run: .venv/bin/python scripts/lr_scheduler_golden.py
"""
import torch

def trace(make, epochs, lr=0.1):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    sched = make(opt)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out

print("step_lr(step_size=3, gamma=0.5):",
      trace(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5), 10))
print("cosine(T_0=4, T_mult=1, eta_min=0.001):",
      trace(lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=4, eta_min=0.001), 10))
print("cosine(T_0=2, T_mult=2, eta_min=0):",
      trace(lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2), 16))

def warmup_cosine(o, warmup=3, decay=5, eta_min=0.01):
    return torch.optim.lr_scheduler.SequentialLR(o, [
        torch.optim.lr_scheduler.LinearLR(o, start_factor=1 / warmup, total_iters=warmup - 1),
        torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=decay, eta_min=eta_min),
    ], milestones=[warmup])

print("warm-up 3 then cosine(T_max=5, eta_min=0.01), lr 0.3:",
      trace(warmup_cosine, 8, lr=0.3))

def trace_per_batch(iters, epochs, lr=0.1):
    """SGDR stepped every batch, as fastai and PyTorch's docs do:
    `scheduler.step(epoch + i / iters)`."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=1, T_mult=2)
    out = []
    for epoch in range(epochs):
        for i in range(iters):
            sched.step(epoch + i / iters)
            out.append(opt.param_groups[0]["lr"])
            opt.step()
    return out

print("cosine(T_0=1, T_mult=2) stepped per batch, 2 batches an epoch:",
      trace_per_batch(2, 4))
