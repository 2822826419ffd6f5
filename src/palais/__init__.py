"""Palais: a self-hosted control room for a small Headscale fleet."""

__version__ = "0.1.0"
