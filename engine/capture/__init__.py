"""Capture: frames from files and interfaces, decoded once into the engine's own small types."""
