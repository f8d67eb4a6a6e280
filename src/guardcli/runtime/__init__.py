"""Backends that run a prepared batch."""
