"""Integrations with other engines (Ray Data: :mod:`inspyrenet_lite.integrations.ray`, the ``[ray]`` extra)."""
