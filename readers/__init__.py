"""Reading data we did not write: annotation files, the four feature layouts, our HDF5
format, the embedded synthetic data, and the safe input and atomic output every reader uses.
Callers import each name from the module that defines it."""
