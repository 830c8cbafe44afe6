"""Tiny random components built offline from configs, for tests and the demo."""
