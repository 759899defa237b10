"""Peak memory of spatiotemporal super-resolution as the video grows: frame windows against all frames at once.

SpatioTemporalSRPipeline denoises ``--window`` frames at a time (overlapping by ``--overlap``), so its
peak memory should stay near that of a window-long video (target: 256 frames within 1.2x of 16); the
peer is the same pipeline with ``window=None``, whose UNet sees every frame at once. Pixel space, a
tiny-ish x4-upscaler-shaped VideoUNet, classifier-free guidance on. Peak memory is measured as in
``benchmarks/unet_step.py`` (whose ``peak_memory`` this imports): on the CPU the resident set size
sampled during the call, above the size before it, with ``MALLOC_MMAP_THRESHOLD_`` set so freed blocks
go back to the system.

    python benchmarks/sr_memory.py
    python benchmarks/sr_memory.py --frames 16 64 256 --device cuda
"""

import argparse
import time

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from unet_step import peak_memory, restart_with_returning_allocator

from cascade import inflate
from cascade.pipelines.spatiotemporal_sr import SpatioTemporalSRPipeline
from cascade.testing.tiny_models import tiny_text_encoder, tiny_tokenizer, tiny_unet2d
from cascade.utils.devices import describe_machine


def build_pipeline(width: int, device: torch.device) -> SpatioTemporalSRPipeline:
    unet = tiny_unet2d(
        "x4_upscaler", in_channels=6, out_channels=3, block_out_channels=(width, width, 2 * width)
    )
    pipe = SpatioTemporalSRPipeline(
        unet=inflate(unet),
        scheduler=DDIMScheduler(num_train_timesteps=1000),
        low_res_scheduler=DDPMScheduler(num_train_timesteps=1000),
        text_encoder=tiny_text_encoder(),
        tokenizer=tiny_tokenizer(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def main() -> None:
    restart_with_returning_allocator()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--overlap", type=int, default=4)
    parser.add_argument("--size", type=int, default=4, help="low-resolution frame size (output: 4x)")
    parser.add_argument("--width", type=int, default=192, help="channels of the first UNet block")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(describe_machine())
    pipe = build_pipeline(args.width, device)
    factor = pipe.config.upscale_factor
    print(
        f"device {device}, pixel space, {args.size}x{args.size} -> {args.size * factor}x{args.size * factor}, "
        f"{args.steps} steps, guidance on, window {args.window} overlap {args.overlap}"
    )

    def run(frames: int, window: int | None) -> None:
        video = np.random.default_rng(0).random((1, frames, args.size, args.size, 3), dtype=np.float32)
        pipe(
            "a red circle",
            video,
            num_inference_steps=args.steps,
            window=window,
            window_overlap=args.overlap if window else None,
            generator=torch.Generator().manual_seed(0),
        )

    run(args.window, args.window)  # warm-up
    modes = {"windowed": args.window, "all frames": None}
    print(f"{'frames':>6} {'mode':>11} {'peak MiB':>9} {'x first':>8} {'seconds':>8}")
    first = {}
    for frames in args.frames:
        for mode, window in modes.items():
            start = time.perf_counter()
            memory = peak_memory(lambda frames=frames, window=window: run(frames, window), device)
            seconds = time.perf_counter() - start
            first.setdefault(mode, memory)
            print(
                f"{frames:>6} {mode:>11} {memory / 2**20:>9.1f} {memory / first[mode]:>8.2f} {seconds:>8.1f}"
            )


if __name__ == "__main__":
    main()
