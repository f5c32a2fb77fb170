"""Hydra multirun support: failure-tolerant jobs and the sweep report."""
