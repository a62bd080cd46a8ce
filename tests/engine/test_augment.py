"""Batch augmentation on the training device: boxes travel with their flipped pixels."""

from __future__ import annotations

import torch

from onestage.engine.augment import random_hflip

WIDTH, HEIGHT = 10, 4


def scene(left: int, right: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (3, HEIGHT, WIDTH) image, zero but for an object over pixel columns left..right - 1,
    rows 1 and 2, whose columns read 1, 2, 3... left to right (so a mirror image differs); and
    its box, normalised xyxy."""
    image = torch.zeros(3, HEIGHT, WIDTH)
    image[:, 1:3, left:right] = torch.arange(1.0, right - left + 1)
    return image, torch.tensor([left / WIDTH, 1 / HEIGHT, right / WIDTH, 3 / HEIGHT])


def test_a_flip_mirrors_the_boxes_with_the_pixels() -> None:
    image, box = scene(1, 4)  # columns 1-3: box x 0.1 to 0.4
    padding = torch.zeros(4)  # a padding slot of the batch layout
    images, boxes = random_hflip(image[None], torch.stack((box, padding))[None], 1.0)
    # x1' = 1 - x2 = 0.6, x2' = 1 - x1 = 0.9: columns 6-8, where the object now reads 3, 2, 1
    torch.testing.assert_close(boxes[0, 0], torch.tensor([0.6, 0.25, 0.9, 0.75]))
    expected = torch.zeros(3, HEIGHT, WIDTH)
    expected[:, 1:3, 6:9] = torch.tensor([3.0, 2.0, 1.0])
    assert torch.equal(images[0], expected)
    assert boxes[0, 1, 2] == boxes[0, 1, 0]  # the padding slot keeps zero width


def test_probability_0_changes_nothing() -> None:
    image, box = scene(1, 4)
    images, boxes = random_hflip(image[None], box[None, None], 0.0)
    assert torch.equal(images[0], image) and torch.equal(boxes[0, 0], box)


def test_each_image_of_a_batch_flips_with_its_own_boxes() -> None:
    torch.manual_seed(0)  # the conftest puts torch's RNG back after the test
    scenes = [scene(left, left + 2) for left in range(8)]  # objects at columns 0-1 ... 7-8
    images = torch.stack([image for image, _ in scenes])  # (8, 3, H, W)
    boxes = torch.stack([box for _, box in scenes])[:, None]  # (8, 1, 4)
    out_images, out_boxes = random_hflip(images, boxes, 0.5)
    flipped = [not torch.equal(out, image) for out, image in zip(out_images, images, strict=True)]
    assert 0 < sum(flipped) < len(flipped)  # seed 0: both kinds in the batch
    for index, was_flipped in enumerate(flipped):
        image, box = scenes[index]
        if was_flipped:  # the mirror image, and the box's x1, x2 = 1 - x2, 1 - x1
            image, box = image.flip(-1), torch.stack((1 - box[2], box[1], 1 - box[0], box[3]))
        assert torch.equal(out_images[index], image)
        torch.testing.assert_close(out_boxes[index, 0], box)
