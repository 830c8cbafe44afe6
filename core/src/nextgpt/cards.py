"""Backend cards of the components core provides (`nextgpt.interfaces.BackendCard`): what their
default real weights are and weigh, for the backends table. Plugins declare their own."""

from nextgpt.interfaces import BackendCard

IMAGEBIND_HUGE = BackendCard(
    weights="imagebind_huge",
    parameters=1.2,
    features=(1, 1024),
    note="one backbone shared by every modality that uses it",
)
"""ImageBind-Huge: a ViT-H vision tower, the OpenCLIP ViT-H text tower and small audio, depth,
thermal and IMU towers; one 1024-d embedding per input."""
