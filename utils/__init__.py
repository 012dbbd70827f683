"""Shared code of the course: one module per topic plus a little infrastructure.

Notebooks import modules, not names (``from utils import embeddings``), so that every call
shows where it lives.
"""
