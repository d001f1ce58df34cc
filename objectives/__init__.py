"""Training objectives: what an energy model minimises on a batch (config group objective/)."""
