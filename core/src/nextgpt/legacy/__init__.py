"""Support for the released NExT-GPT weights (``7b_tiva_v0``): key structure and converter."""
