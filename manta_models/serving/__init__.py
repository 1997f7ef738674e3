"""Shared model services: one model copy serves many streams, their requests batched (batcher.py)."""
