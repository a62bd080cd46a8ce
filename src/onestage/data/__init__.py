"""Data: dataset records (`records`, with the padding and ignore class ids), readers and writers
(`formats`), synthetic generation, transforms, checks, stratified splits and torch datasets."""
