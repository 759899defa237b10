"""Tensor operations on videos ``(B, C, F, H, W)`` that models, pipelines and training share: folding frames
into the batch, resizing, frame windows, conditioning, text encoding and VAE encoding/decoding."""
