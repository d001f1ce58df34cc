"""Reasoning problems. Each module holds one family; configs/task/ names them for Hydra."""
