"""Priors and box codings: where a head's predictions sit and how its outputs read as boxes.

`anchors` generates SSD anchor boxes per level; `codings` pairs a head's priors (anchors, or one
point per feature-map cell) with the code its outputs are written in (SSD offsets against an
anchor, or left/top/right/bottom distances from a point, as a DFL distribution) and the score
mode (softmax with background last, or sigmoid).
"""
