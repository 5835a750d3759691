"""Datasets of mirbench: readers of the official layouts, builders, downloaders and DataModules."""
