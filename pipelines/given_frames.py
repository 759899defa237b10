"""The frames a keyframes call is given (image-to-video, extension): checked and brought to one tensor."""

import numpy as np
import PIL.Image
import torch

from cascade.utils.checks import is_int

from .inputs import video_to_tensor


def image_as_video(image):
    """``image`` as a one-frame video in a form :func:`~.inputs.video_to_tensor` takes: a PIL image (one video),
    a list of PIL images (one per video), an np array ``(H, W, 3)`` or ``(B, H, W, 3)`` or a tensor ``(3, H, W)``
    or ``(B, 3, H, W)`` in [0, 1]."""
    if isinstance(image, PIL.Image.Image):
        image = [image]
    if isinstance(image, list) and image and all(isinstance(item, PIL.Image.Image) for item in image):
        modes = sorted({item.mode for item in image} - {"RGB"})
        if modes:
            raise ValueError(
                f"`image` must be RGB, got mode {modes[0]}; convert it with `image.convert('RGB')`."
            )
        return [[item] for item in image]
    if isinstance(image, np.ndarray) and image.ndim in (3, 4) and image.shape[-1] == 3:
        return image[None, None] if image.ndim == 3 else image[:, None]
    if isinstance(image, torch.Tensor) and image.ndim in (3, 4) and image.shape[-3] == 3:
        return image[None, None] if image.ndim == 3 else image[:, None]
    raise ValueError(
        "`image` must be a PIL image (RGB), a list of them (one per prompt), an np array (H, W, 3) or "
        f"(B, H, W, 3), or a tensor (3, H, W) or (B, 3, H, W) in [0, 1]; got {type(image).__name__} of shape "
        f"{tuple(getattr(image, 'shape', ()))}."
    )


def are_frame_positions(indices, count: int, num_frames: int) -> bool:
    """Whether ``indices`` is a list (or tuple) of ``count`` distinct ints in ``[0, num_frames)``."""
    return (
        isinstance(indices, list | tuple)
        and len(indices) == count
        and all(is_int(index) and 0 <= index < num_frames for index in indices)
        and len(set(indices)) == count
    )


def given_frames(
    image, conditioning_frames, conditioning_frame_indices, processor, num_frames: int, size: tuple[int, int]
) -> tuple[torch.Tensor | None, list[int]]:
    """The given frames ``(B, 3, K, H, W)`` in [-1, 1] (``B`` 1 or the batch) and their output positions, from
    ``image`` (the first frame) or ``conditioning_frames`` (a video, at ``conditioning_frame_indices``,
    default ``0, 1, ..., K - 1``); ``(None, [])`` when neither is given. ``ValueError`` naming the argument
    when the frames are not ``size`` ``(H, W)`` or the positions are not distinct ints in
    ``[0, num_frames)``."""
    if image is not None and conditioning_frames is not None:
        raise ValueError("give `image` (the first frame) or `conditioning_frames`, not both.")
    if conditioning_frames is None and conditioning_frame_indices is not None:
        raise ValueError("`conditioning_frame_indices` needs `conditioning_frames`.")
    if image is None and conditioning_frames is None:
        return None, []
    name = "image" if image is not None else "conditioning_frames"
    video = video_to_tensor(
        image_as_video(image) if image is not None else conditioning_frames, processor, name
    )
    count = video.shape[2]
    indices = list(range(count)) if conditioning_frame_indices is None else conditioning_frame_indices
    if not are_frame_positions(indices, count, num_frames):
        raise ValueError(
            f"`conditioning_frame_indices` must be {count} distinct ints in [0, num_frames={num_frames}) (one per "
            f"conditioning frame), got {conditioning_frame_indices!r}."
        )
    if tuple(video.shape[-2:]) != tuple(size):
        raise ValueError(
            f"`{name}` frames must be {size[0]}x{size[1]} (the call's height x width), got "
            f"{video.shape[-2]}x{video.shape[-1]}; resize them first."
        )
    return video, list(indices)
