"""Losses: the terms (`terms`: VFL, QFL, CIoU, DFL), the anchor-head losses (`anchor`: seed,
SSD, focal), the anchor-free quality loss (`quality`) and the criterion that assigns targets and
calls them (`criterion`)."""
