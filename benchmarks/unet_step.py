"""Per-step forward time and peak memory of cascade's VideoUNet against diffusers' UNetMotionModel.

Both are built from the same 2D UNet (every block with cross-attention, so both place one temporal
attention per spatial layer) with the same number of temporal attention layers; our temporal
convolutions are switched off so both do the same work. Prints medians and ratios (ours / theirs); the
timed forwards of the two models alternate, so a change in the machine's load hits both alike.

    python benchmarks/unet_step.py               # CPU
    python benchmarks/unet_step.py --device cuda --dtype float16

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` above the weights; on the CPU, the
resident set size sampled every 0.2 ms during one forward, above the size before it, with glibc told
to return every freed block over 64 KiB to the system (``MALLOC_MMAP_THRESHOLD_``) so that the resident
size follows the live tensors instead of the allocator's cache.
"""

import argparse
import os
import statistics
import sys
import threading
import time

import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

from cascade import inflate
from cascade.utils.devices import describe_machine


def build_models(width: int, sample_size: int):
    channels = (width, 2 * width, 2 * width)
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=channels,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D",) * 3,
        up_block_types=("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=64,
        attention_head_dim=8,
    )
    ours = inflate(unet, temporal_convolutions=False, temporal_attention_heads=8)
    adapter = MotionAdapter(
        block_out_channels=channels,
        motion_layers_per_block=1,
        motion_num_attention_heads=8,
        motion_norm_num_groups=32,
        motion_max_seq_length=64,
        use_motion_mid_block=True,
    )
    theirs = UNetMotionModel.from_unet2d(unet, adapter)
    count = [
        sum(isinstance(m, AnimateDiffTransformer3D) for m in model.modules()) for model in (ours, theirs)
    ]
    if count[0] != count[1]:
        raise RuntimeError(f"temporal attention layers differ: ours {count[0]}, theirs {count[1]}")
    return ours, theirs, count[0]


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def peak_memory(run, device) -> int:
    """Bytes above the starting level that one call of ``run`` peaks at."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        start = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - start
    start, peak, done = resident_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], resident_bytes())
            time.sleep(0.0002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    run()
    done.set()
    sampler.join()
    return max(peak[0], resident_bytes()) - start


def step_seconds(run, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def restart_with_returning_allocator() -> None:
    """Re-executes this script with glibc returning freed blocks over 64 KiB to the system, so the
    resident set size follows live tensors (a no-op once that is set)."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") != "65536":
        os.execve(
            sys.executable, [sys.executable, *sys.argv], {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
        )


def main() -> None:
    restart_with_returning_allocator()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--repeats", type=int, default=10, help="timed forwards per setting (>= 10)")
    parser.add_argument("--width", type=int, default=64, help="channels of the first UNet block")
    parser.add_argument("--size", type=int, default=32, help="latent height and width")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    args = parser.parse_args()
    if args.repeats < 10:
        parser.error(f"--repeats must be >= 10, got {args.repeats}")
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    print(describe_machine())

    torch.manual_seed(0)
    ours, theirs, layers = build_models(args.width, args.size)
    models = {
        "cascade VideoUNet": ours.to(device, dtype).eval(),
        "UNetMotionModel": theirs.to(device, dtype).eval(),
    }
    print(
        f"device {device}, {args.dtype}, {layers} temporal attention layers each, latents {args.size}x{args.size}"
    )
    print(f"{'frames':>6} {'model':>18} {'median s/step':>14} {'peak MiB':>9}")
    for frames in args.frames:
        sample = torch.randn(1, 4, frames, args.size, args.size, device=device, dtype=dtype)
        text = torch.randn(1, 8, 64, device=device, dtype=dtype)
        runs = {}
        for name, model in models.items():
            # UNetMotionModel takes (B, C, F, H, W) like ours but wants the text repeated per frame.
            context = text if model is ours else text.repeat_interleave(frames, dim=0)

            def run(model=model, sample=sample, context=context):
                with torch.no_grad():
                    model(sample, 500, context)

            run()  # warm-up
            runs[name] = run
        memory = {name: peak_memory(run, device) for name, run in runs.items()}
        # Interleaved, so a change in the machine's load hits both models alike.
        times = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, run in runs.items():
                times[name].append(step_seconds(run, device))
        results = {name: (statistics.median(times[name]), memory[name]) for name in runs}
        for name, (seconds, peak) in results.items():
            print(f"{frames:>6} {name:>18} {seconds:>14.4f} {peak / 2**20:>9.1f}")
        (our_time, our_memory), (their_time, their_memory) = results.values()
        print(
            f"{frames:>6} {'ratio ours/theirs':>18} {our_time / their_time:>14.3f} {our_memory / their_memory:>9.3f}"
        )


if __name__ == "__main__":
    main()
