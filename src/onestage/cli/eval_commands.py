"""`onestage predict`, `evaluate` and `compare`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from onestage.cli.app import app, console, error_console
from onestage.cli.options import (
    BackendOption,
    BackgroundsOption,
    DeviceOption,
    IconsOption,
    ObjectsOption,
    PluginOption,
    PrecisionOption,
    SeedOption,
    StrictOption,
    TrustPluginOption,
    WeightsOption,
    load_user_plugins,
)
from onestage.predict_options import EVALUATION, PREDICTION


@app.command("predict")
def predict_command(
    source: Annotated[str, typer.Argument(help="An image, a folder or a glob pattern.")],
    weights: WeightsOption = "animals",
    conf: Annotated[float, typer.Option("--conf", help="Score threshold.")] = PREDICTION.conf,
    iou: Annotated[float, typer.Option("--iou", help="NMS IoU threshold.")] = PREDICTION.iou,
    max_det: Annotated[
        int, typer.Option("--max-det", help="Detections per image.")
    ] = PREDICTION.max_det,
    candidates: Annotated[
        str, typer.Option("--candidates", help="all (multi-label) or argmax (the seed's rule).")
    ] = PREDICTION.candidates,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default runs/predict/expN).")
    ] = None,
    save_txt: Annotated[bool, typer.Option("--save-txt", help="Also write YOLO txt.")] = False,
    compile_model: Annotated[
        bool, typer.Option("--compile", help="bf16 + torch.compile: slower start, faster images.")
    ] = False,
    device: DeviceOption = "auto",
    backend: BackendOption = None,
    precision: PrecisionOption = None,
    plugin: PluginOption = None,
    trust_plugin: TrustPluginOption = None,
) -> None:
    """Detect objects: annotated images, predictions.json (COCO results), optional YOLO txt.

    Without --backend, weights run on ONNX Runtime f32 when installed (the fastest accurate
    runtime measured; else OpenVINO f32, else torch; torch on a GPU or with --compile)."""
    from onestage.engine.predict_folder import predict_source
    from onestage.engine.predictor import PredictOptions, open_detector
    from onestage.engine.shards import Shard
    from onestage.errors import OnestageError
    from onestage.fileio import unique_run_dir

    if backend is None and compile_model:
        backend = "torch"
    load_user_plugins(plugin, trust_plugin)
    detector = open_detector(weights, device, backend, precision)
    shard = Shard.from_environment()
    if shard.is_main:
        console.print(
            f"weights: {weights} ({detector.metadata['model']}, "
            f"{len(detector.class_names)} classes); backend: {detector.runtime_description}",
            highlight=False,
        )
    if compile_model:
        detector.accelerate()
    options = PredictOptions(conf=conf, iou=iou, max_det=max_det, candidates=candidates)
    if shard.world_size > 1 and out is None:
        raise OnestageError("under torchrun every process writes to one folder: give --out")
    out_dir = out or unique_run_dir("runs/predict", "exp")
    summary = predict_source(detector, source, out_dir, options, save_txt, shard=shard)
    if summary is None:  # another rank's share is done; rank 0 merges and reports
        return
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
    conf: Annotated[
        float,
        typer.Option(
            "--conf", help="Score threshold (confusion matrix, grid: at least predict's)."
        ),
    ] = EVALUATION.conf,
    iou: Annotated[float, typer.Option("--iou", help="NMS IoU threshold.")] = EVALUATION.iou,
    max_det: Annotated[
        int, typer.Option("--max-det", help="Detections per image (also COCO maxDets).")
    ] = EVALUATION.max_det,
    candidates: Annotated[
        str, typer.Option("--candidates", help="all (multi-label) or argmax (the seed's rule).")
    ] = EVALUATION.candidates,
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
    strict: StrictOption = False,
    backend: BackendOption = None,
    precision: PrecisionOption = None,
    plugin: PluginOption = None,
    trust_plugin: TrustPluginOption = None,
) -> None:
    """Score weights on a dataset or a synthetic test set: VOC mAP@0.5, COCO metrics, report."""
    from onestage.data.synthetic import parse_count_range
    from onestage.engine.evaluator import evaluate, write_report
    from onestage.engine.predictor import PredictOptions
    from onestage.engine.shards import Shard
    from onestage.errors import OnestageError
    from onestage.fileio import unique_run_dir

    load_user_plugins(plugin, trust_plugin)
    options = PredictOptions(conf=conf, iou=iou, max_det=max_det, candidates=candidates)
    synthetic_options = {
        "objects": parse_count_range(objects),
        "seed": seed,
        "icons": icons,
        "backgrounds": backgrounds,
    }
    shard = Shard.from_environment()
    if shard.world_size > 1 and out is None:
        raise OnestageError("under torchrun every process writes to one folder: give --out")
    out_dir = out or unique_run_dir("runs/evaluate", "exp")
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
            strict,
            backend,
            precision,
            shard,
            out_dir / "parts",
        )
    if result is None:  # another rank's share is handed in; rank 0 scores and reports
        return
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


@app.command("compare")
def compare_command(
    models: Annotated[
        list[str], typer.Argument(help="Weights files, run folders or shipped weights names.")
    ],
    data: Annotated[Path | None, typer.Option("--data", help="Dataset folder.")] = None,
    split: Annotated[str | None, typer.Option("--split", help="Split (default val).")] = None,
    synthetic: Annotated[
        int | None, typer.Option("--synthetic", help="Compare on N fixed synthetic images.")
    ] = None,
    size: Annotated[int, typer.Option("--size", help="Synthetic image side in pixels.")] = 320,
    objects: ObjectsOption = "4",
    icons: IconsOption = None,
    backgrounds: BackgroundsOption = None,
    seed: SeedOption = 0,
    rounds: Annotated[int, typer.Option("--rounds", help="Latency rounds per model.")] = 20,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default runs/compare/expN).")
    ] = None,
    backend: BackendOption = None,
    precision: PrecisionOption = None,
    plugin: PluginOption = None,
    trust_plugin: TrustPluginOption = None,
) -> None:
    """Rank detectors on one test set: accuracy, size, compute and batch-1 CPU latency."""
    from onestage.data.synthetic import parse_count_range
    from onestage.engine.compare import compare, resolve_entry, write_leaderboard
    from onestage.engine.evaluator import dataset_eval_set, synthetic_eval_set
    from onestage.engine.predictor import Detector
    from onestage.errors import OnestageError
    from onestage.fileio import unique_run_dir

    if (data is None) == (synthetic is None):
        raise OnestageError("give either --data DIR or --synthetic N")
    load_user_plugins(plugin, trust_plugin)
    class_names = Detector.load(resolve_entry(models[0]).weights, "cpu").class_names
    if data is not None:
        eval_set = dataset_eval_set(data, class_names, split)
        test_set = f"{data} ({split or 'default split'}, {len(eval_set)} images)"
    else:
        eval_set = synthetic_eval_set(
            class_names,
            synthetic,
            size=size,
            objects=parse_count_range(objects),
            seed=seed,
            icons=icons,
            backgrounds=backgrounds,
        )
        test_set = f"{synthetic} synthetic images, {size} px, seed {seed}"
    with console.status("scoring and timing"):
        rows = compare(models, eval_set, rounds=rounds, backend=backend, precision=precision)
    out_dir = out or unique_run_dir("runs/compare", "exp")
    write_leaderboard(rows, out_dir, test_set)
    table = Table(title=test_set)
    for column in ("name", "params", "GFLOPs", "mAP@0.5", "mAP@[.5:.95]", "ms", "flags"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.name,
            f"{row.parameters:,}",
            f"{row.gflops:.2f}",
            f"{row.map50:.4f}",
            f"{row.map50_95:.4f}",
            f"{row.forward_ms + row.postprocess_ms:.1f}",
            "; ".join(row.flags),
        )
    console.print(table)
    console.print(f"leaderboard in [bold]{out_dir}[/]")
