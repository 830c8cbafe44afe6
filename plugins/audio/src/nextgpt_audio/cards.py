"""Backend cards of the audio decoders (`nextgpt.interfaces.BackendCard`): default weights, their
condition and parameter counts (from the model cards), for the backends table."""

from nextgpt.conditions import ConditionSpec
from nextgpt.interfaces import BackendCard

AUDIOLDM = BackendCard(
    weights="cvssp/audioldm-l-full",
    parameters=0.95,  # UNet 0.74 B, CLAP text encoder 0.13 B, VAE and HiFi-GAN vocoder
    condition=ConditionSpec.pooled_vector(512),
)
STABLE_AUDIO = BackendCard(
    weights="stabilityai/stable-audio-open-1.0",
    parameters=1.32,  # DiT 1.06 B, T5-base encoder 0.11 B, Oobleck VAE 0.16 B
    condition=ConditionSpec.sequence(128, 768, mask="attention_mask"),
)
CLAP_HTSAT_UNFUSED = BackendCard(
    weights="laion/clap-htsat-unfused",
    parameters=0.03,  # the HTSAT audio tower and its projection (the text tower is not loaded)
    features=(1, 512),  # one projected embedding per sound
)
