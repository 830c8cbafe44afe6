"""Encoder backends that plugins build their `nextgpt.interfaces.Encoder` from.

`nextgpt.encoders.imagebind` holds the ImageBind backend (one frozen model shared by every
modality that uses it, plus ImageBind's own preprocessing). It needs the optional extra
``nextgpt-core[imagebind]`` and ``imagebind-unofficial`` (non-commercial licence) and is only
imported when a plugin builds an ImageBind encoder.
"""
