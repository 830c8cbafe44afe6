"""Licences of the components nextgpt knows about. Plugins declare their own with `Licence`."""

from nextgpt.interfaces import Licence

APACHE_2 = Licence(name="Apache-2.0", commercial_use=True, url="https://www.apache.org/licenses/LICENSE-2.0")
CC_BY_NC_4 = Licence(name="CC-BY-NC-4.0", commercial_use=False, url="https://creativecommons.org/licenses/by-nc/4.0/")
CC_BY_NC_SA_4 = Licence(
    name="CC-BY-NC-SA-4.0", commercial_use=False, url="https://creativecommons.org/licenses/by-nc-sa/4.0/"
)
OPENRAIL_M = Licence(
    name="CreativeML-OpenRAIL-M",
    commercial_use=True,
    url="https://huggingface.co/spaces/CompVis/stable-diffusion-license",
)
OPENRAIL_PLUS_PLUS = Licence(
    name="CreativeML-OpenRAIL++-M",
    commercial_use=True,
    url="https://huggingface.co/PixArt-alpha/PixArt-Sigma-XL-2-1024-MS",
)
"""PixArt-Sigma weights (and SDXL's VAE it uses): use-based restrictions, commercial use allowed."""
STABILITY_COMMUNITY = Licence(
    name="Stability-AI-Community",
    commercial_use=False,
    note="commercial use only under USD 1M annual revenue",
    url="https://huggingface.co/stabilityai/stable-audio-open-1.0/blob/main/LICENSE.md",
)
"""Stable Audio Open 1.0: free for research and for organisations under USD 1M annual revenue;
commercial use above that needs an enterprise licence (so not marked as commercial)."""
LLAMA_1 = Licence(name="LLaMA-1 research licence", commercial_use=False)
RANDOM_WEIGHTS = Licence(name="random weights (no licence needed)", commercial_use=True)
IMAGEBIND = CC_BY_NC_4
"""ImageBind code and weights (Meta): CC BY-NC 4.0."""
