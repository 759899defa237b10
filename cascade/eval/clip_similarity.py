"""CLIPSIM: CLIP similarity between the frames of a video and its caption (Wu et al. 2021, GODIVA)."""

import numpy as np
import torch
import torch.nn.functional as F

from cascade.eval.scores import Scores
from cascade.eval.video_input import to_video_tensor
from cascade.utils.checks import check_int

DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_preprocess(frames: torch.Tensor, size: int) -> torch.Tensor:
    """CLIP image preprocessing of ``(N, H, W, 3)`` frames in [0, 1] to ``(N, 3, size, size)`` model input.

    As CLIP's (and ``CLIPImageProcessor``'s) defaults: bicubic resize of the shorter side to ``size``
    (long side ``int(long * size / short)``; PyTorch antialiased bicubic instead of PIL's), centre crop to
    ``size`` x ``size``, normalisation with CLIP's mean and std.
    """
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"frames must be a (N, H, W, 3) tensor in [0, 1]; got {shape}")
    check_int("size", size, minimum=1)
    images = frames.permute(0, 3, 1, 2)  # (N, 3, H, W)
    height, width = images.shape[-2:]
    short = min(height, width)
    new_height, new_width = (
        (size, int(width * size / short)) if height == short else (int(height * size / short), size)
    )
    if (new_height, new_width) != (height, width):
        images = F.interpolate(
            images, size=(new_height, new_width), mode="bicubic", align_corners=False, antialias=True
        ).clamp(0.0, 1.0)
    top, left = (new_height - size) // 2, (new_width - size) // 2
    images = images[..., top : top + size, left : left + size]  # (N, 3, size, size)
    mean = images.new_tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(CLIP_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def _check_captions(captions, count: int) -> list[str]:
    if isinstance(captions, str) or not isinstance(captions, list | tuple):
        raise ValueError(
            f"captions must be a list of {count} strings (one per video); got {type(captions).__name__}"
        )
    if len(captions) != count or not all(isinstance(c, str) and c.strip() for c in captions):
        raise ValueError(
            f"captions must hold {count} non-empty strings, one per video; got {len(captions)} "
            f"items: {list(captions)!r:.200}"
        )
    return list(captions)


def _load_default(model_name: str):
    from transformers import CLIPModel, CLIPTokenizer

    return CLIPModel.from_pretrained(model_name, use_safetensors=True), CLIPTokenizer.from_pretrained(
        model_name
    )


@torch.no_grad()
def clipsim(
    videos: np.ndarray | torch.Tensor,
    captions: list[str],
    model=None,
    processor=None,
    *,
    model_name: str = DEFAULT_CLIP_MODEL,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> Scores:
    """CLIPSIM (Wu et al. 2021, "GODIVA: Generating Open-DomaIn Videos from nAtural Descriptions"): mean
    CLIP cosine similarity between each frame and the video's caption, on the 0-1 scale papers report.

    Convention: per frame ``max(cos(E_image(frame), E_text(caption)), 0)`` -- CLIPScore (Hessel et al.
    2021) with weight 1 instead of 100 -- averaged over the frames of a video, then over videos. With
    ``openai/clip-vit-base-patch32`` published MSR-VTT values are about 0.29-0.31 (e.g. Make-A-Video,
    VideoFusion). Frames are preprocessed by :func:`clip_preprocess` at the model's image size; captions
    are tokenised with truncation to the model's context length.

    Args:
        videos: ``(B, F, H, W, 3)`` float in [0, 1] or uint8.
        captions: ``B`` non-empty strings, one per video.
        model: a loaded ``transformers.CLIPModel`` (with ``processor``); ``None`` loads ``model_name``
            with ``CLIPModel.from_pretrained`` and ``CLIPTokenizer.from_pretrained``.
        processor: a ``CLIPProcessor`` or CLIP tokenizer for ``model`` (only its tokenizer is used).
        model_name: the checkpoint loaded when ``model`` is ``None``.
        batch_size: frames per image-encoder call.
        device: device the model runs on.

    Returns:
        :class:`~cascade.eval.scores.Scores` with per-video ``values`` ``(B,)`` and their mean.
    """
    check_int("batch_size", batch_size, minimum=1)
    clips = to_video_tensor(videos, "videos")  # (B, F, H, W, 3)
    captions = _check_captions(captions, clips.shape[0])
    if (model is None) != (processor is None):
        raise ValueError(
            "model and processor must be given together (or both None to load model_name); got "
            f"model={type(model).__name__}, processor={type(processor).__name__}"
        )
    if model is None:
        model, processor = _load_default(model_name)
    for part in ("text_model", "vision_model", "text_projection", "visual_projection"):
        if not hasattr(model, part):
            raise ValueError(f"model must be a transformers CLIPModel; {type(model).__name__} has no {part}")
    tokenizer = getattr(processor, "tokenizer", processor)
    model = model.to(device).eval()
    tokens = tokenizer(
        captions,
        padding=True,
        truncation=True,
        return_tensors="pt",
        max_length=model.config.text_config.max_position_embeddings,
    )
    text = model.text_model(
        input_ids=tokens["input_ids"].to(device), attention_mask=tokens["attention_mask"].to(device)
    ).pooler_output
    text = F.normalize(model.text_projection(text).float(), dim=-1)  # (B, P)
    size = model.config.vision_config.image_size
    image = []
    for batch in clips.flatten(0, 1).split(batch_size):  # (n, H, W, 3)
        pixels = clip_preprocess(batch, size).to(device=device, dtype=model.dtype)  # (n, 3, size, size)
        pooled = model.vision_model(pixel_values=pixels).pooler_output
        image.append(F.normalize(model.visual_projection(pooled).float(), dim=-1))  # (n, P)
    image = torch.cat(image).reshape(clips.shape[0], clips.shape[1], -1)  # (B, F, P)
    cosine = (image * text[:, None, :]).sum(dim=-1)  # (B, F)
    return Scores.from_values(cosine.clamp(min=0.0).mean(dim=1).double().cpu().numpy())
