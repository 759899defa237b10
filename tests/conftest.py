"""Fixtures the pipeline tests share: a module's ``make_pipeline(latent=...)`` built once per module, in pixel
space and in a VAE's latent space."""

import pytest


@pytest.fixture(scope="module")
def pixel_pipe(request):
    return request.module.make_pipeline(latent=False)


@pytest.fixture(scope="module")
def latent_pipe(request):
    return request.module.make_pipeline(latent=True)
