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
LLAMA_1 = Licence(name="LLaMA-1 research licence", commercial_use=False)
RANDOM_WEIGHTS = Licence(name="random weights (no licence needed)", commercial_use=True)
IMAGEBIND = CC_BY_NC_4
"""ImageBind code and weights (Meta): CC BY-NC 4.0."""
