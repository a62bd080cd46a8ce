"""Data: synthetic generation, dataset formats, torch datasets."""
