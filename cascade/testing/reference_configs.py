"""The UNet configs of the public checkpoints the cascade inflates, for tests that need their real size.

Values of ``unet/config.json`` (keys at their diffusers defaults left out, ``_``-keys dropped) of:

- ``SD15_UNET``: Stable Diffusion 1.5 (Rombach et al. 2022, "High-Resolution Image Synthesis with
  Latent Diffusion Models", arXiv:2112.10752), Hub repo ``stable-diffusion-v1-5/stable-diffusion-v1-5``
  (formerly ``runwayml/stable-diffusion-v1-5``).
- ``X4_UPSCALER_UNET``: the Stable Diffusion x4 upscaler, Hub repo
  ``stabilityai/stable-diffusion-x4-upscaler``: 7 input channels (4 latent + 3 low-resolution RGB),
  the noise level as a class label, cross-attention-only transformers in the first three blocks
  (``disable_self_attentions`` of its original ``x4-upscaling.yaml``).

Written from those files (not downloaded: the tests run offline); ``attention_head_dim`` is, as in the
files, diffusers' historical name for the number of heads.
"""

# Keys both configs give with the same value.
_SHARED = {
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-05,
    "attention_head_dim": 8,
}

SD15_UNET = {
    **_SHARED,
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "cross_attention_dim": 768,
}

X4_UPSCALER_UNET = {
    **_SHARED,
    "sample_size": 128,
    "in_channels": 7,
    "out_channels": 4,
    "down_block_types": [
        "DownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
    ],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "only_cross_attention": [True, True, True, False],
    "block_out_channels": [256, 512, 512, 1024],
    "cross_attention_dim": 1024,
    "dual_cross_attention": False,
    "use_linear_projection": True,
    "num_class_embeds": 1000,
}
