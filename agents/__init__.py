"""Routers: baselines and learned agents."""
