"""Grids <-> tokens, augmentations, dataset files on disk and Grain pipelines."""
