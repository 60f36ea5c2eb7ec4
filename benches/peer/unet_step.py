"""The PyTorch side of examples/unet_step.rs: the same UNet architectures as diffusers'
UNet2DModel, timed the same way (one warm-up run, then the median of --iterations runs of a
forward pass and of a training step: forward, MSE, backward, AdamW), on 2 CPU threads (or a
CUDA device, waited for after each run), with the peak memory of the process (resident on the
CPU, allocated on the GPU). Never run by CI.

    pip install torch diffusers
    python3 benches/peer/unet_step.py --preset tiny --size 32
    python3 benches/peer/unet_step.py --preset faces64 --size 64 --iterations 3
    python3 benches/peer/unet_step.py --preset faces64 --size 64 --batch 64 --device cuda
"""
import argparse
import resource
import statistics
import time

import torch
from diffusers import UNet2DModel

PRESETS = {
    # block_out_channels, attention per level, extra UNet2DModel arguments (see UNetConfig).
    "tiny": ((32, 64), (False, True), dict(layers_per_block=1, norm_num_groups=8)),
    "faces64": ((64, 128, 256, 256), (False, False, True, True),
                dict(attention_head_dim=64, resnet_time_scale_shift="scale_shift", dropout=0.1)),
    "cifar10": ((128, 256, 256, 256), (False, True, False, False),
                dict(attention_head_dim=None, dropout=0.1)),
}


def median_time(iterations, work, device):
    def run():
        work()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    run()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    channels, attention, extra = PRESETS[args.preset]
    model = UNet2DModel(
        block_out_channels=channels,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        **extra,
    ).to(device)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=generator).to(device)
    target = torch.randn(args.batch, 3, args.size, args.size, generator=generator).to(device)
    t = torch.tensor([float(i * 61 % 1000) for i in range(args.batch)]).to(device)

    model.eval()

    def forward():
        with torch.no_grad():
            model(x, t)

    forward_time = median_time(args.iterations, forward, device)

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(x, t).sample, target)
        loss.backward()
        optimizer.step()

    step_time = median_time(args.iterations, step, device)
    if device.type == "cuda":
        peak = f"peak allocated {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB"
        where = torch.cuda.get_device_name(device)
    else:
        peak = f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
        where = f"{torch.get_num_threads()} threads"
    print(f"{args.preset} {args.size}x{args.size} batch {args.batch}: forward median "
          f"{forward_time * 1e3:.1f}ms, train step median {step_time * 1e3:.1f}ms "
          f"({args.batch / step_time:.1f} images/s), {peak} (torch {torch.__version__}, {where})")


if __name__ == "__main__":
    main()
