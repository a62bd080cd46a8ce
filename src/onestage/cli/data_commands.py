"""`onestage data ...`: make, check, convert, split and view datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from onestage.cli.app import FORMAT_HELP, console, data_app, error_console
from onestage.cli.options import (
    BackgroundsOption,
    ClassesOption,
    IconsOption,
    ObjectsOption,
    OverlapOption,
    SeedOption,
    SizeOption,
    SizeRangeOption,
    StrictOption,
)
from onestage.errors import OnestageError


def _synthetic_config(
    size: int,
    objects: str,
    size_range: str,
    max_overlap: float,
    classes: str | None,
    icons: Path | None,
    backgrounds: Path | None,
    seed: int,
):
    from onestage.data.synthetic import (
        SyntheticConfig,
        parse_count_range,
        parse_fraction_range,
    )

    return SyntheticConfig(
        width=size,
        height=size,
        objects=parse_count_range(objects),
        size_range=parse_fraction_range(size_range),
        max_overlap=max_overlap,
        classes=tuple(c.strip() for c in classes.split(",") if c.strip()) if classes else (),
        icons=icons,
        backgrounds=backgrounds,
        seed=seed,
    )


def _parse_splits(specs: list[str]) -> dict[str, int]:
    splits: dict[str, int] = {}
    for spec in specs:
        name, _, count = spec.partition(":")
        if not name or not count.isdigit():
            raise OnestageError(f"--split: expected NAME:COUNT such as train:1000, got {spec!r}")
        splits[name] = int(count)
    return splits


def _check_format(fmt: str) -> str:
    from onestage.data.formats import FORMATS

    if fmt not in FORMATS:
        raise OnestageError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return fmt


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    fmt: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "yolo",
    split: Annotated[
        list[str] | None, typer.Option("--split", help="NAME:COUNT, repeatable.")
    ] = None,
    size: SizeOption = 320,
    objects: ObjectsOption = "4",
    size_range: SizeRangeOption = "0.15625-0.5",
    max_overlap: OverlapOption = 0.01,
    classes: ClassesOption = None,
    icons: IconsOption = None,
    backgrounds: BackgroundsOption = None,
    seed: SeedOption = 0,
    image_format: Annotated[str, typer.Option("--image-format", help="png or jpg.")] = "png",
) -> None:
    """Write a synthetic detection dataset (icons pasted on backgrounds)."""
    from onestage.data.synthesize import synthesize_dataset
    from onestage.data.synthetic import SyntheticGenerator

    generator = SyntheticGenerator(
        _synthetic_config(size, objects, size_range, max_overlap, classes, icons, backgrounds, seed)
    )
    split_sizes = _parse_splits(split or ["train:1000", "val:200"])
    if image_format not in ("png", "jpg"):
        raise OnestageError(f"--image-format must be png or jpg, got {image_format!r}")
    with _progress() as progress:
        task = progress.add_task("synthesising", total=sum(split_sizes.values()))
        dataset = synthesize_dataset(
            generator,
            out,
            _check_format(fmt),
            split_sizes,
            image_suffix=f".{image_format}",
            on_image=lambda: progress.advance(task),
        )
    counts = ", ".join(f"{name} {len(records)}" for name, records in dataset.splits.items())
    console.print(f"wrote {fmt} dataset to [bold]{out}[/] ({counts} images)")


@data_app.command("check")
def data_check(
    root: Annotated[Path, typer.Argument(help="Dataset folder.")],
    fmt: Annotated[str | None, typer.Option("--format", help=FORMAT_HELP)] = None,
    strict: StrictOption = False,
) -> None:
    """Validate a dataset: counts per class, box sizes, boxes clipped to the image (warnings) and
    every problem found (exit 1 if any)."""
    from onestage.data.check import check_dataset

    report = check_dataset(root, _check_format(fmt) if fmt else None, strict=strict)
    _print_report(root, report)
    if report.problems:
        raise typer.Exit(code=1)


def _print_report(root: Path, report) -> None:
    from onestage.data.records import label_fixes_summary

    splits = ", ".join(f"{name}: {count}" for name, count in report.images_per_split.items())
    console.print(f"[bold]{root}[/] — {report.format} dataset, {len(report.class_names)} classes")
    console.print(f"images: {splits} (without objects: {report.images_without_objects})")
    table = Table(title="objects per class")
    table.add_column("id", justify="right")
    table.add_column("class")
    table.add_column("objects", justify="right")
    for class_id, name in enumerate(report.class_names):
        table.add_row(str(class_id), name, str(report.objects_per_class.get(name, 0)))
    console.print(table)
    sizes = Table(title="box sizes")
    for column in ("measure", "min", "median", "max"):
        sizes.add_column(column, justify="right" if column != "measure" else "left")
    for measure, (low, median, high) in report.box_sizes.items():
        sizes.add_row(measure, f"{low:.3g}", f"{median:.3g}", f"{high:.3g}")
    console.print(sizes)
    if report.label_fixes:
        summary = label_fixes_summary(report.label_fixes)
        console.print(f"[bold yellow]warning:[/] {summary} (--strict refuses them):")
        for fix in report.label_fixes:
            console.print(f"  {fix}", highlight=False, soft_wrap=True)
    if report.problems:
        console.print(f"[bold red]{len(report.problems)} problem(s):[/]")
        for problem in report.problems:
            console.print(f"  {problem}", highlight=False, soft_wrap=True)
    else:
        console.print("[green]no problems found[/]")


@data_app.command("convert")
def data_convert(
    src: Annotated[Path, typer.Argument(help="Source dataset folder.")],
    dst: Annotated[Path, typer.Argument(help="Destination folder.")],
    fmt: Annotated[str, typer.Option("--format", help="Target format: yolo, voc or coco.")],
    src_format: Annotated[
        str | None, typer.Option("--from", help="Source format (default: detected).")
    ] = None,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Report and skip bad images instead of failing.")
    ] = False,
    strict: StrictOption = False,
) -> None:
    """Convert a dataset between YOLO, VOC and COCO."""
    from onestage.data.formats import read_dataset, write_dataset

    dataset, problems = read_dataset(
        src,
        _check_format(src_format) if src_format else None,
        skip_invalid=skip_invalid,
        strict=strict,
        verify_images=True,
    )
    for problem in problems:
        error_console.print(f"skipped: {problem}", highlight=False, soft_wrap=True)
    write_dataset(dataset, dst, _check_format(fmt))
    console.print(f"wrote {dataset.num_images} images as {fmt} to [bold]{dst}[/]")


@data_app.command("split")
def data_split(
    root: Annotated[Path, typer.Argument(help="Dataset folder (YOLO, VOC or COCO).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder: new or empty.")],
    ratios: Annotated[
        tuple[float, float, float] | None,
        typer.Option(
            "--ratios",
            help="Train, val and test fractions, each >= 0, summing to 1 (default: 0.8 0.1 0.1).",
        ),
    ] = None,
    seed: SeedOption = 0,
    fmt: Annotated[
        str | None, typer.Option("--format", help="Output format (default: the input's).")
    ] = None,
    link: Annotated[
        bool, typer.Option("--link", help="Hard-link images instead of copying (same file system).")
    ] = False,
) -> None:
    """Split a dataset into train/val/test, stratified by class (all input splits re-drawn)."""
    from onestage.data.formats import detect_format
    from onestage.data.split import DEFAULT_RATIOS, SPLITS, split_dataset

    ratios = ratios or DEFAULT_RATIOS
    fmt = _check_format(fmt) if fmt else detect_format(root)
    dataset = split_dataset(root, out, ratios, seed=seed, fmt=fmt, link=link)
    console.print(f"wrote {dataset.num_images} images as {fmt} to [bold]{out}[/] (seed {seed})")
    table = Table(title="objects per class")
    table.add_column("class")
    for name, ratio in zip(SPLITS, ratios, strict=True):
        records = dataset.splits.get(name, [])
        if ratio > 0 and not records:
            console.print(f"{name}: no images (too few for ratio {ratio:g}), not written")
        if not records:
            continue
        objects = sum(record.num_objects for record in records)
        empty = sum(record.num_objects == 0 for record in records)
        console.print(f"{name}: {len(records)} images ({empty} without objects), {objects} objects")
        table.add_column(name, justify="right")
    for class_id, class_name in enumerate(dataset.class_names):
        counts = [
            sum(int((record.class_ids == class_id).sum()) for record in records)
            for records in dataset.splits.values()
        ]
        table.add_row(class_name, *map(str, counts))
    console.print(table)


@data_app.command("show")
def data_show(
    root: Annotated[Path | None, typer.Argument(help="Dataset folder.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Output PNG.")] = Path("grid.png"),
    synthetic: Annotated[
        bool, typer.Option("--synthetic", help="Show generated samples instead of a folder.")
    ] = False,
    count: Annotated[int, typer.Option("--count", help="Number of images.")] = 16,
    split: Annotated[str | None, typer.Option("--split", help="Split to show.")] = None,
    size: SizeOption = 320,
    objects: ObjectsOption = "4",
    size_range: SizeRangeOption = "0.15625-0.5",
    max_overlap: OverlapOption = 0.01,
    classes: ClassesOption = None,
    icons: IconsOption = None,
    backgrounds: BackgroundsOption = None,
    seed: SeedOption = 0,
    augment: Annotated[
        bool,
        typer.Option(
            "--augment",
            help="Show the train split as training sees it: augmented by the training config "
            "(--config, --set), fitted to its imgsz, flipped.",
        ),
    ] = False,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="--augment: YAML file of config keys.")
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="--augment: config override KEY=VALUE, repeatable."),
    ] = None,
) -> None:
    """Draw ground-truth boxes and class names on a grid of images."""
    from onestage.data.preview import dataset_grid, synthetic_grid

    if synthetic == (root is not None):
        raise OnestageError("give either a dataset folder or --synthetic")
    if (config_file or overrides) and not augment:
        raise OnestageError("--config and --set go with --augment")
    if augment:
        if synthetic:
            raise OnestageError("--augment shows a dataset folder, not --synthetic")
        grid = _augmented_grid(root, count, config_file, overrides or [])
    elif synthetic:
        config = _synthetic_config(
            size, objects, size_range, max_overlap, classes, icons, backgrounds, seed
        )
        grid = synthetic_grid(config, count)
    else:
        grid = dataset_grid(root, count, split)
    from onestage.data.images import save_image

    save_image(grid, out)
    console.print(f"wrote [bold]{out}[/]")


def _augmented_grid(root: Path, count: int, config_file: Path | None, overrides: list[str]):
    """A grid of the first `count` training draws of the dataset folder `root` under the
    training config of `config_file` and `overrides`."""
    from onestage.config import make_config, parse_override
    from onestage.data.preview import batch_grid
    from onestage.engine.training_data import augment_settings, preview_batch

    values = dict(parse_override(text) for text in overrides)
    config = make_config(yaml_path=config_file, overrides={**values, "data": str(root)})
    if not augment_settings(config).active:
        console.print("note: the config turns no augmentation on; showing the fitted images")
    names, images, boxes, class_ids = preview_batch(config, count)
    return batch_grid(images.numpy(), boxes.numpy(), class_ids.numpy(), names)
