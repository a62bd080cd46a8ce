"""Data: dataset records (`records`, with the padding and ignore class ids), readers and writers
(`formats`), synthetic generation, transforms, checks, stratified splits (`split`), torch datasets
and the training augmentation pipeline (`augment`: box-exact transforms; `augmented`: the
pipeline)."""
