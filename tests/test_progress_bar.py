"""One progress bar per stage call, its windows or chunks inside it (issue 26, part 7)."""

import io

import numpy as np
import torch

from cascade import KeyframesPipeline
from cascade.pipelines.spatial_sr import SpatialSRPipeline
from cascade.testing.tiny_models import tiny_keyframes_components, tiny_super_resolution_components


def record_bars(pipe) -> tuple[list, io.StringIO]:
    """The progress bars ``pipe`` opens, as they are made, and the text they print."""
    stream = io.StringIO()
    pipe.set_progress_bar_config(file=stream)
    bars, open_bar = [], pipe.progress_bar

    def recording(*args, **kwargs):
        bars.append(open_bar(*args, **kwargs))
        return bars[-1]

    pipe.progress_bar = recording
    return bars, stream


def test_a_windowed_keyframes_call_prints_one_bar_over_all_its_windows_steps():
    pipe = KeyframesPipeline(**tiny_keyframes_components())
    bars, stream = record_bars(pipe)
    pipe("a red circle", num_frames=7, window=4, window_overlap=2, num_inference_steps=3, output_type="pt")
    assert len(bars) == 1
    assert bars[0].total == 3 * 3 and bars[0].n == 9  # 3 windows (frames 0-3, 2-5, 3-6) x 3 steps
    assert "9/9" in stream.getvalue() and "3/3" not in stream.getvalue()


def test_a_spatial_sr_call_prints_one_bar_over_all_its_chunks_steps():
    pipe = SpatialSRPipeline(**tiny_super_resolution_components(inflated=False))
    bars, stream = record_bars(pipe)
    video = np.random.default_rng(0).random((1, 3, 8, 8, 3), dtype=np.float32)  # (B, F, H, W, 3)
    generator = torch.Generator().manual_seed(0)
    pipe(
        "a red circle",
        video,
        frame_chunk_size=2,
        num_inference_steps=2,
        generator=generator,
        output_type="pt",
    )
    assert len(bars) == 1
    assert bars[0].total == 2 * 2 and bars[0].n == 4  # chunks of frames 0-1 and 2 x 2 steps
    assert "4/4" in stream.getvalue() and "2/2" not in stream.getvalue()
