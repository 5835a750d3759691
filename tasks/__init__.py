"""Restoration tasks: inpaint, sr, dualsr, interp. Each has registry.py with DATASETS and METHODS."""
