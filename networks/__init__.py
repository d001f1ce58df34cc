"""Network blocks shared by energies and baselines, one module per family of networks."""
