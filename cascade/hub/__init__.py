"""Pretrained checkpoints and the Hugging Face Hub: the weights manifest (:mod:`cascade.hub.manifest`), which
names the 2D checkpoint each stage inflates, and ``cascade build`` (:mod:`cascade.hub.build`), which fetches,
checks, inflates and writes them."""
