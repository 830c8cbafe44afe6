"""SigLIP image encoder: tiny build, own preprocessing, save/load round trip."""

import torch
from nextgpt_image.siglip import SiglipImageEncoder
from PIL import Image


def test_tiny_siglip_encodes_an_image_to_its_width(tmp_path):
    encoder = SiglipImageEncoder.from_source("tiny")
    pixels = encoder.preprocess(Image.new("RGB", (50, 40), "red"))
    features = encoder(pixels[None])
    assert features.shape == (1, 16, encoder.dim)
    encoder.model.save_pretrained(tmp_path)
    encoder.processor.save_pretrained(tmp_path)
    loaded = SiglipImageEncoder.from_source(str(tmp_path))
    assert torch.allclose(loaded(pixels[None]), features)


def test_image_plugin_registers_siglip_with_its_licence():
    from nextgpt.plugins import default_registry

    backend = default_registry().encoders[("image", "siglip")]
    assert backend.licence.name == "Apache-2.0" and backend.licence.commercial == "yes"
    encoder = backend.build("tiny", None)
    assert isinstance(encoder, SiglipImageEncoder) and encoder.dim == 32
