"""Training NExT-GPT's three alignment stages with Lightning."""
