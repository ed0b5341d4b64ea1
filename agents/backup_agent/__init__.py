"""Manifest-driven backup agents: MySQL, Grafana and files into restic."""

__version__ = "0.1.0"
