"""A run's life below the commands: its saved options, its folder (names, checks before the
first write, checkpoints) and the localisation pass over trained networks."""
