"""Tools for running the function locally and testing it: never imported by the function."""
