"""Backend cards of the image decoders (`nextgpt.interfaces.BackendCard`): default weights, their
condition and parameter counts (from the model cards), for the backends table."""

from nextgpt.conditions import ConditionPart, ConditionSpec
from nextgpt.interfaces import BackendCard

STABLE_DIFFUSION = BackendCard(
    weights="stable-diffusion-v1-5/stable-diffusion-v1-5",
    parameters=1.07,  # UNet 0.86 B, CLIP ViT-L/14 text encoder 0.12 B, VAE 0.08 B
    condition=ConditionSpec.sequence(77, 768),
)
PIXART_SIGMA = BackendCard(
    weights="PixArt-alpha/PixArt-Sigma-XL-2-1024-MS",
    parameters=5.45,  # transformer 0.61 B, T5-XXL encoder 4.76 B, VAE 0.08 B
    condition=ConditionSpec.sequence(300, 4096, mask="prompt_attention_mask"),
)
FLUX_SCHNELL = BackendCard(
    weights="black-forest-labs/FLUX.1-schnell",
    parameters=16.9,  # transformer 11.9 B, T5-XXL encoder 4.76 B, CLIP-L text encoder 0.12 B, VAE 0.08 B
    condition=ConditionSpec(
        parts=(
            ConditionPart(name="prompt_embeds", shape=(256, 4096)),
            ConditionPart(name="pooled_prompt_embeds", shape=(768,)),
        )
    ),
)
SIGLIP_SO400M = BackendCard(
    weights="google/siglip-so400m-patch14-384",
    parameters=0.43,  # the vision tower of SigLIP so400m (the text tower is not loaded)
    features=(729, 1152),  # 27 x 27 patches of 14 px at 384 px, width 1152
)
