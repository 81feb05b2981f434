"""`hypernet.loading`: the model comes from the caller; only faces pick the toy default."""

import pytest

from hypernet import attention
from hypernet.errors import HypernetConfigError
from hypernet.generation import ModelInfo
from hypernet.loading import DefaultModel, load_generator, load_pipeline_for, model_info


def test_no_model_and_no_default_says_what_to_pass(tmp_path):
    for call in (lambda: load_generator(None, hypernet_dir=tmp_path), lambda: load_pipeline_for(None),
                 lambda: model_info(None)):
        with pytest.raises(HypernetConfigError, match="toy_model_loader"):
            call()


def test_the_callers_default_model_is_loaded_and_named(pipe, tmp_path):
    asked = []
    default = DefaultModel(load=lambda dtype: asked.append(dtype) or pipe, info=lambda: ModelInfo(name="mine", hash="abc"))
    generator = load_generator(None, hypernet_dir=tmp_path, device="cpu", progress=False, default_model=default)
    try:
        assert generator.pipe is pipe and asked and generator.model == ModelInfo(name="mine", hash="abc")
    finally:
        attention.uninstall(pipe.unet)


def test_the_faces_default_is_the_embedded_toy_model():
    from hypernet.cli.defaults import TOY_MODEL_NAME, toy_model_loader

    info = toy_model_loader().info()
    assert info.name == TOY_MODEL_NAME == "hypernet-toy" and info.hash
