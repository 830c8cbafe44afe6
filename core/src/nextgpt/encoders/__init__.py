"""Encoder backends that plugins build their `nextgpt.interfaces.Encoder` from.

`nextgpt.encoders.imagebind` holds the ImageBind backend: one frozen model shared by every
modality that uses it, viewed per tower by `ImageBindEncoder`; each modality's plugin gives it
the preprocessing of its media (ImageBind's own, in ``nextgpt_<modality>.imagebind``). It needs
the optional extra ``nextgpt-core[imagebind]`` and ``imagebind-unofficial`` (non-commercial
licence) and is only imported when a plugin builds an ImageBind encoder.
"""
