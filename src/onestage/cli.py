"""The `onestage` command line: parses options, calls the library, prints results."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from onestage.errors import OnestageError

app = typer.Typer(
    help="Build, train, evaluate and ship one-stage object detectors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(
    help="Make, check, convert and view detection datasets.", no_args_is_help=True
)
app.add_typer(data_app, name="data")

console = Console(soft_wrap=True)
error_console = Console(stderr=True, soft_wrap=True)

FORMAT_HELP = "Dataset format: yolo, voc or coco."


def main() -> None:
    """Entry point: user mistakes become one `error:` line and exit code 2, never a traceback."""
    try:
        app()
    except OnestageError as error:
        error_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)


# ---- generator options shared by `data synth` and `data show --synthetic` ----
SizeOption = Annotated[int, typer.Option("--size", help="Image side in pixels (square images).")]
ObjectsOption = Annotated[str, typer.Option("--objects", help="Objects per image: N or MIN-MAX.")]
SizeRangeOption = Annotated[
    str,
    typer.Option(
        "--size-range",
        help="Icon side as a fraction of the image side, MIN-MAX (seed: 50-160 px at 320).",
    ),
]
OverlapOption = Annotated[
    float, typer.Option("--max-overlap", help="Placement limit: max IoU x normalised area.")
]
ClassesOption = Annotated[
    str | None,
    typer.Option(
        "--classes",
        help="Comma-separated emoji: seed animal names, Unicode names ('giraffe face'), "
        "code points (U+1F992), optionally NAME=EMOJI. Default: the seed's 15 animals.",
    ),
]
IconsOption = Annotated[
    Path | None, typer.Option("--icons", help="Folder of RGBA PNG icons (class = file stem).")
]
BackgroundsOption = Annotated[
    Path | None,
    typer.Option("--backgrounds", help="Folder of background photos (default: procedural)."),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Random seed (same seed, same bytes).")]


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


StrictOption = Annotated[
    bool, typer.Option("--strict", help="Refuse boxes slightly outside the image (no clipping).")
]


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
) -> None:
    """Draw ground-truth boxes and class names on a grid of images."""
    from onestage.data.preview import dataset_grid, synthetic_grid

    if synthetic == (root is not None):
        raise OnestageError("give either a dataset folder or --synthetic")
    if synthetic:
        config = _synthetic_config(
            size, objects, size_range, max_overlap, classes, icons, backgrounds, seed
        )
        grid = synthetic_grid(config, count)
    else:
        grid = dataset_grid(root, count, split)
    from onestage.data.images import save_image

    save_image(grid, out)
    console.print(f"wrote [bold]{out}[/]")


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option("--out", help="Demo folder.")] = Path("runs/demo"),
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs.")] = 8,
    steps: Annotated[int, typer.Option("--steps", help="Optimiser steps per epoch.")] = 200,
) -> None:
    """The main job on built-in synthetic data: shipped weights, a short training run, scores."""
    from onestage.config import RECIPES
    from onestage.engine.demo import run_demo

    images = epochs * steps * RECIPES["fast"]["batch"]
    console.print(
        f"[bold]onestage demo[/]: seed architecture, synthetic animals; output in {out}/\n"
        f"1) shipped weights on a fixed synthetic test set, 2) {images:,} training images with "
        "the 'fast' recipe, 3) evaluation of the new weights"
    )
    summary = run_demo(out, RichTrainProgress(), epochs=epochs, steps=steps)
    for note in summary.notes:
        console.print(f"note: {note}")
    table = Table(title="demo results (fixed synthetic test set)")
    for column in ("weights", "VOC mAP@0.5", "COCO AP@[.5:.95]", "report"):
        table.add_column(column)
    for label, result, report in (
        ("shipped seed_animals", summary.shipped, summary.shipped_report),
        ("trained just now", summary.trained, summary.trained_report),
    ):
        if result is not None:
            table.add_row(label, f"{result.voc.map:.4f}", f"{result.coco.ap:.4f}", str(report))
    console.print(table)
    console.print(
        f"training run: [bold]{summary.run_dir}[/] (results.csv, results.png, val/, weights/)\n"
        f"data preview: [bold]{summary.data_preview}[/]; predictions drawn in each report's "
        "predictions_grid.png"
    )


class RichTrainProgress:
    """Draws one progress bar per epoch with loss parts, learning rate and images/s."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task = None

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self._progress = Progress(
            TextColumn(f"epoch {epoch + 1}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=steps, status="")

    def step(self, parts: dict[str, float], lr: float, images_per_s: float) -> None:
        status = " ".join(f"{name} {value:.4f}" for name, value in parts.items())
        status += f" lr {lr:.2e} {images_per_s:.1f} img/s"
        self._progress.update(self._task, advance=1, status=status)

    def end_epoch(self, row: dict[str, float]) -> None:
        self._progress.stop()


@app.command(
    "train",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": False},
)
def train_command(
    overrides: Annotated[
        list[str] | None,
        typer.Argument(
            help="Config overrides KEY=VALUE (e.g. lr=0.001 hflip=0.5).", show_default=False
        ),
    ] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="YAML file of config keys.")
    ] = None,
    recipe: Annotated[str | None, typer.Option("--recipe", help="Named recipe, e.g. seed.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Architecture name.")] = None,
    data: Annotated[
        str | None, typer.Option("--data", help="Dataset folder (default: synthetic).")
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Number of epochs.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Optimiser steps per epoch.")] = None,
    batch: Annotated[
        int | None, typer.Option("--batch", help="Images per step (all processes).")
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda.")] = None,
    amp: Annotated[str | None, typer.Option("--amp", help="none, bf16 or fp16.")] = None,
    channels_last: Annotated[
        bool | None, typer.Option("--channels-last/--no-channels-last", help="Memory format.")
    ] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Data-loader workers.")] = None,
    patience: Annotated[int | None, typer.Option("--patience", help="Early-stop patience.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Run folder name.")] = None,
    project: Annotated[str | None, typer.Option("--project", help="Folder of runs.")] = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Run folder (or its weights) to continue.")
    ] = None,
) -> None:
    """Train a detector; writes runs/train/NAME/ (config, results.csv, plots, weights)."""
    from onestage.config import make_config, parse_override
    from onestage.engine.run_folder import resume_config
    from onestage.engine.trainer import train

    values = dict(parse_override(text) for text in overrides or [])
    flags = {
        "model": model,
        "data": data,
        "epochs": epochs,
        "steps": steps,
        "batch": batch,
        "device": device,
        "amp": amp,
        "channels_last": channels_last,
        "workers": workers,
        "patience": patience,
        "name": name,
        "project": project,
    }
    values.update({key: value for key, value in flags.items() if value is not None})
    if resume is not None:
        if recipe is not None or config_file is not None:
            raise OnestageError(
                "--resume continues a run with its own config; drop --recipe/--config"
            )
        config = resume_config(resume, values)
    else:
        config = make_config(recipe, config_file, values)
    import os

    is_main = int(os.environ.get("RANK", "0")) == 0
    result = train(config, RichTrainProgress() if is_main else None, resume=resume)
    if is_main and result.run_dir is not None:
        last = result.history[-1] if result.history else {}
        console.print(
            f"done: {result.epochs_done} epochs"
            + (" (stopped early)" if result.stopped_early else "")
            + (f", last loss {last['train/loss']:.4f}" if last else "")
            + f"; results in [bold]{result.run_dir}[/]"
        )


@app.command("summary")
def summary_command(
    model: Annotated[str, typer.Option("--model", help="Architecture name.")] = "seed",
    classes: Annotated[int, typer.Option("--classes", help="Number of classes.")] = 15,
    imgsz: Annotated[int, typer.Option("--imgsz", help="Input side in pixels.")] = 320,
) -> None:
    """Print a Keras-style layer table with parameter totals and GFLOPs per image."""
    from onestage.models import build_model
    from onestage.models.summary import format_summary, summarize

    network = build_model(model, num_classes=classes, input_size=imgsz)
    console.print(format_summary(summarize(network, input_size=imgsz)), highlight=False)


@app.command("anchors")
def anchors_command(
    model: Annotated[str, typer.Option("--model", help="Architecture name.")] = "seed",
    config_name: Annotated[str, typer.Option("--config", help="Anchor config name.")] = "seed",
    imgsz: Annotated[int, typer.Option("--imgsz", help="Input side in pixels.")] = 320,
    out: Annotated[Path | None, typer.Option("--out", help="Write an (N, 4) .npy file.")] = None,
) -> None:
    """Print anchor counts per level; optionally save normalised xyxy anchors in model order."""
    import io

    import numpy as np

    from onestage.anchors import anchor_counts_per_level, generate_anchors
    from onestage.fileio import atomic_write_bytes
    from onestage.models import model_class

    feature_sizes = model_class(model).feature_sizes_for(imgsz)
    counts = anchor_counts_per_level(config_name, feature_sizes)
    table = Table(title=f"{config_name} anchors for {model} at {imgsz}px")
    table.add_column("level")
    table.add_column("anchors", justify="right")
    for (height, width), count in zip(feature_sizes, counts, strict=True):
        table.add_row(f"{height}x{width}", f"{count:,}")
    table.add_row("total", f"{sum(counts):,}")
    console.print(table)
    if out is not None:
        anchors = generate_anchors(config_name, feature_sizes).numpy()
        buffer = io.BytesIO()
        np.save(buffer, anchors)
        atomic_write_bytes(out, buffer.getvalue())
        console.print(f"wrote {anchors.shape} normalised xyxy anchors to [bold]{out}[/]")


WeightsOption = Annotated[
    str, typer.Option("--weights", help="Weights file, or shipped weights by name.")
]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]


@app.command("predict")
def predict_command(
    source: Annotated[str, typer.Argument(help="An image, a folder or a glob pattern.")],
    weights: WeightsOption = "seed_animals",
    conf: Annotated[float, typer.Option("--conf", help="Score threshold.")] = 0.25,
    iou: Annotated[float, typer.Option("--iou", help="NMS IoU threshold.")] = 0.5,
    max_det: Annotated[int, typer.Option("--max-det", help="Detections per image.")] = 100,
    candidates: Annotated[
        str, typer.Option("--candidates", help="all (multi-label) or argmax (the seed's rule).")
    ] = "all",
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default runs/predict/expN).")
    ] = None,
    save_txt: Annotated[bool, typer.Option("--save-txt", help="Also write YOLO txt.")] = False,
    compile_model: Annotated[
        bool, typer.Option("--compile", help="bf16 + torch.compile: slower start, faster images.")
    ] = False,
    device: DeviceOption = "auto",
) -> None:
    """Detect objects: annotated images, predictions.json (COCO results), optional YOLO txt."""
    from onestage.engine.predictor import Detector, PredictOptions, predict_source
    from onestage.fileio import unique_run_dir

    detector = Detector.load(weights, device)
    if compile_model:
        detector.accelerate()
    options = PredictOptions(conf=conf, iou=iou, max_det=max_det, candidates=candidates)
    out_dir = out or unique_run_dir("runs/predict", "exp")
    summary = predict_source(detector, source, out_dir, options, save_txt)
    for message in summary.skipped:
        error_console.print(f"skipped: {message}", highlight=False)
    console.print(
        f"{summary.images} image(s), {summary.detections} detection(s); "
        f"results in [bold]{summary.out_dir}[/]"
    )


@app.command("evaluate")
def evaluate_command(
    weights: WeightsOption = "seed_animals",
    data: Annotated[Path | None, typer.Option("--data", help="Dataset folder.")] = None,
    split: Annotated[str | None, typer.Option("--split", help="Split (default val).")] = None,
    synthetic: Annotated[
        int | None, typer.Option("--synthetic", help="Evaluate on N fixed synthetic images.")
    ] = None,
    objects: ObjectsOption = "4",
    icons: IconsOption = None,
    backgrounds: BackgroundsOption = None,
    seed: SeedOption = 0,
    conf: Annotated[float, typer.Option("--conf", help="Score threshold.")] = 0.001,
    iou: Annotated[float, typer.Option("--iou", help="NMS IoU threshold.")] = 0.5,
    max_det: Annotated[
        int, typer.Option("--max-det", help="Detections per image (also COCO maxDets).")
    ] = 100,
    candidates: Annotated[
        str, typer.Option("--candidates", help="all (multi-label) or argmax (the seed's rule).")
    ] = "all",
    iou_convention: Annotated[
        str, typer.Option("--iou-convention", help="continuous (geometric) or cartucho (+1 px).")
    ] = "continuous",
    export_cartucho: Annotated[
        Path | None, typer.Option("--export-cartucho", help="Write Cartucho/mAP input files.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Report folder (default runs/evaluate/expN).")
    ] = None,
    batch: Annotated[int, typer.Option("--batch", help="Images per forward pass.")] = 32,
    device: DeviceOption = "auto",
) -> None:
    """Score weights on a dataset or a synthetic test set: VOC mAP@0.5, COCO metrics, report."""
    from onestage.data.synthetic import parse_count_range
    from onestage.engine.evaluator import evaluate, write_report
    from onestage.engine.predictor import PredictOptions
    from onestage.fileio import unique_run_dir

    options = PredictOptions(conf=conf, iou=iou, max_det=max_det, candidates=candidates)
    synthetic_options = {
        "objects": parse_count_range(objects),
        "seed": seed,
        "icons": icons,
        "backgrounds": backgrounds,
    }
    with console.status("evaluating"):
        result = evaluate(
            weights,
            data,
            split,
            synthetic,
            synthetic_options,
            options,
            batch,
            iou_convention,
            device,
        )
    out_dir = out or unique_run_dir("runs/evaluate", "exp")
    write_report(result, out_dir, export_cartucho)
    _print_evaluation(result)
    console.print(f"report in [bold]{out_dir}[/]")


def _print_evaluation(result) -> None:
    table = Table(title=f"{len(result.eval_set)} images")
    for column in ("class", "GT", "det", "TP", "FP", "VOC AP50", "COCO AP"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name in result.eval_set.class_names:
        counts = result.voc.counts[name]
        voc_ap = result.voc.ap_per_class.get(name)
        coco_ap = result.coco.ap_per_class.get(name)
        table.add_row(
            name,
            str(counts.ground_truths),
            str(counts.detections),
            str(counts.true_positives),
            str(counts.false_positives),
            "-" if voc_ap is None else f"{voc_ap:.3f}",
            "-" if coco_ap is None else f"{coco_ap:.3f}",
        )
    console.print(table)
    coco = result.coco
    console.print(
        f"VOC mAP@0.5 (all-point) [bold]{result.voc.map:.4f}[/]   "
        f"COCO AP@[.5:.95] [bold]{coco.ap:.4f}[/]  AP50 {coco.ap50:.4f}  AP75 {coco.ap75:.4f}  "
        f"APs {coco.ap_small:.3f} APm {coco.ap_medium:.3f} APl {coco.ap_large:.3f}  "
        f"AR@{coco.max_dets} {coco.ar_max_dets:.4f}"
    )
