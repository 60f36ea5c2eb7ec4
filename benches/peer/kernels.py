"""The PyTorch side of `cargo bench --bench unet -- kernels`: the same single layers on the same
shapes (a 16x32x32x32 activation; 16x8x256x256 softmax scores; packed 16x256x(3*64) attention
projections with 8 heads), forward under no_grad and forward + backward of sum(f(x)), on 2 CPU
threads; one warm-up, then the median of 30 runs (10 for softmax and attention). Never run by CI.

    pip install torch
    python3 benches/peer/kernels.py
"""
import statistics
import time

import torch


def median_ms(work, runs):
    work()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def report(name, op, x, runs=30):
    def forward():
        with torch.no_grad():
            op(x)

    def forward_backward():
        leaf = x.clone().requires_grad_()
        op(leaf).sum().backward()

    print(f"{name}: forward {median_ms(forward, runs):.3f} ms, "
          f"forward + backward {median_ms(forward_backward, runs):.3f} ms")


def attention(qkv, heads=8):
    batch, tokens, width = qkv.shape
    channels = width // 3
    q, k, v = (qkv[:, :, i * channels:(i + 1) * channels]
               .reshape(batch, tokens, heads, channels // heads).transpose(1, 2) for i in range(3))
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).reshape(batch, tokens, channels)


def main():
    torch.set_num_threads(2)
    x = torch.randn(16, 32, 32, 32)
    report("conv 3x3 32->32", torch.nn.Conv2d(32, 32, 3, padding=1), x)
    report("SiLU", torch.nn.functional.silu, x)
    report("GroupNorm(8, 32)", torch.nn.GroupNorm(8, 32), x)
    report("softmax 16x8x256x256", lambda s: torch.softmax(s, 3), torch.randn(16, 8, 256, 256), 10)
    report("attention 16x256, 8 heads of 8", attention, torch.randn(16, 256, 192), 10)


if __name__ == "__main__":
    main()
