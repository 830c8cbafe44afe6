"""Backend cards of the video decoders (`nextgpt.interfaces.BackendCard`): default weights, their
condition and parameter counts (from the model cards), for the backends table."""

from nextgpt.conditions import ConditionSpec
from nextgpt.interfaces import BackendCard

ZEROSCOPE = BackendCard(
    weights="cerspense/zeroscope_v2_576w",
    parameters=1.85,  # 3-D UNet 1.41 B, OpenCLIP ViT-H text encoder 0.35 B, VAE 0.08 B
    condition=ConditionSpec.sequence(77, 1024),
)
COGVIDEOX_2B = BackendCard(
    weights="THUDM/CogVideoX-2b",
    parameters=6.67,  # transformer 1.69 B, T5-XXL encoder 4.76 B, 3-D VAE 0.22 B
    condition=ConditionSpec.sequence(226, 4096),
)
WAN_2_1_T2V_1_3B = BackendCard(
    weights="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    parameters=7.23,  # transformer 1.42 B, UMT5-XXL encoder 5.68 B, Wan VAE 0.13 B
    condition=ConditionSpec.sequence(512, 4096),
)
SIGLIP_SO400M_FRAMES = BackendCard(
    weights="google/siglip-so400m-patch14-384",
    parameters=0.43,  # SigLIP so400m's vision tower (the text tower is not loaded)
    features=(8, 1152),  # one pooled vector per sampled frame, 8 frames by default
)
