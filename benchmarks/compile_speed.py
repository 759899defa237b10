"""Per-step time of the demo keyframes UNet eager, in channels_last, and compiled with ``torch.compile``
(issue 19, item 2: measure each change).

The UNet of ``--model`` (default the shipped demo's keyframes stage) runs one denoising forward on a guidance
batch (2 videos) of ``--frames`` frames at its trained size, without gradients, in ``--dtype``. Variants:

- ``eager``: as loaded;
- ``channels_last``: its 2D convolutions' weights in ``torch.channels_last`` (they then run and return it);
- ``compiled``: ``torch.compile(unet, fullgraph=True)`` (inductor), first call (the compile) timed apart.

The timed forwards of the variants alternate, so a change in the machine's load hits all alike. Prints
medians over ``--repeats`` and the ratios to eager, and the compile's seconds.

    python benchmarks/compile_speed.py                   # CPU, float32, 8 and 16 frames
    python benchmarks/compile_speed.py --device cuda --dtype float16
"""

import argparse
import statistics
import time
from pathlib import Path

import torch

from cascade.models import VideoUNet
from cascade.utils.devices import describe_machine

REPO = Path(__file__).resolve().parent.parent
VARIANTS = ("eager", "channels_last", "compiled")


def inputs(unet: VideoUNet, frames: int, device, dtype) -> tuple:
    """A guidance batch's noisy sample ``(2, C, F, h, w)``, timestep and text ``(2, L, D)``."""
    generator = torch.Generator().manual_seed(0)
    size = unet.sample_size
    sample = torch.randn(2, unet.in_channels, frames, size, size, generator=generator)
    text = torch.randn(2, 8, unet.cross_attention_dim, generator=generator)
    return sample.to(device, dtype), torch.tensor(500, device=device), text.to(device, dtype)


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def timed(model, arguments, device) -> float:
    synchronize(device)
    start = time.perf_counter()
    model(*arguments)
    synchronize(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "weights" / "demo" / "keyframes")
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--repeats", type=int, default=11, help="timed forwards per variant and setting")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    args = parser.parse_args(argv)
    if args.repeats < 3 or min(args.frames) < 1:
        parser.error("--repeats must be >= 3 and --frames >= 1")
    if not (args.model / "unet" / "config.json").is_file():
        parser.error(f"--model {str(args.model)!r} has no unet/ folder")
    print(describe_machine(), flush=True)
    dtype = getattr(torch, args.dtype)
    eager = VideoUNet.from_pretrained(args.model / "unet", use_safetensors=True).to(args.device, dtype).eval()
    last = VideoUNet.from_pretrained(args.model / "unet", use_safetensors=True).to(args.device, dtype).eval()
    for module in last.modules():  # the 2D convolutions; the temporal ones' weights are 5D
        if isinstance(module, torch.nn.Conv2d):
            module.to(memory_format=torch.channels_last)
    compiled = torch.compile(eager, fullgraph=True)
    models = {"eager": eager, "channels_last": last, "compiled": compiled}
    results = {"machine": describe_machine(), "settings": {k: str(v) for k, v in vars(args).items()}}
    print("| frames | variant | s / step (median) | / eager | compile s |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for frames in args.frames:
        arguments = inputs(eager, frames, args.device, dtype)
        compile_seconds = timed(compiled, arguments, args.device)  # the first call compiles
        times = {name: [] for name in VARIANTS}
        for name in VARIANTS[:2]:
            timed(models[name], arguments, args.device)  # warm-up
        for _ in range(args.repeats):
            for name in VARIANTS:
                times[name].append(timed(models[name], arguments, args.device))
        medians = {name: statistics.median(values) for name, values in times.items()}
        results[frames] = {"median_seconds": medians, "compile_seconds": compile_seconds}
        for name in VARIANTS:
            compile_cell = f"{compile_seconds:.0f}" if name == "compiled" else ""
            print(
                f"| {frames} | {name} | {medians[name]:.4f} | {medians[name] / medians['eager']:.2f} | "
                f"{compile_cell} |",
                flush=True,
            )
    return results


if __name__ == "__main__":
    main()
