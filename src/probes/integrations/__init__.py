"""Adapters that drive the framework-free probes from a training framework."""
