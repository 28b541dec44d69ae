"""Grids of runs as trials on Ray: the trials and their fault tolerance, the grid syntax,
and the ranked tables."""
