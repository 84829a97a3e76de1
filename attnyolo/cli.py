"""The `attnyolo` command: argparse subcommands that map flags onto engine calls."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

# phi of the original yolov4-tiny-keras scripts; accepted here only, for people coming from them.
# phi 4 is the paper's Coordinate Attention; --phi-original asks for the scripts' own blocks, which
# differ from attnyolo's defaults only there (their ca_block is not the paper's).
PHI = {"0": None, "1": "se", "2": "cbam", "3": "eca", "4": "ca"}
PHI_ORIGINAL = {**PHI, "4": "ca_original"}
ATTENTION_HELP = (
    "an attention type (`attnyolo summary` lists them), with options as "
    "cbam:reduction=16,spatial_bn=true, or the original scripts' phi 0-4"
)
PHI_ORIGINAL_HELP = (
    "read a phi in --attention as the original scripts' blocks: 4 is their own Coordinate "
    "Attention, ca_original, instead of the paper's ca (0-3 are the same either way)"
)


ABLATE_MINUTES = 10.0


def _attention(value: str) -> str | None:
    """A name, a name with options (`cbam:reduction=16,spatial_bn=true`) or a phi."""
    from attnyolo.engine.config import parse_attention
    from attnyolo.layers import attention_names

    if value in PHI:
        return value  # a phi, named by _resolve_phi once --phi-original is known
    if value.lower() == "none":
        return None
    name = value.split(":", 1)[0].lower()
    if name not in attention_names():
        raise argparse.ArgumentTypeError(
            f"unknown attention {name!r}; choose from none, {', '.join(attention_names())} "
            "or the original scripts' phi 0-4"
        )
    try:
        parse_attention(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return name + value[len(name) :]


def _resolve_phi(args) -> None:
    """Replaces the phi numbers in `args.attention` by attention names."""
    value = getattr(args, "attention", None)
    if value is None:
        return
    table = PHI_ORIGINAL if args.phi_original else PHI
    if isinstance(value, list):
        args.attention = [table.get(v, v) for v in value]
    else:
        args.attention = table.get(value, value)


def _add_attention_arguments(parser: argparse.ArgumentParser, **kwargs) -> None:
    parser.add_argument("--attention", type=_attention, help=ATTENTION_HELP, **kwargs)
    parser.add_argument("--phi-original", action="store_true", help=PHI_ORIGINAL_HELP)


def _classes(value: str) -> int | list[str]:
    """A class count, or a names file with one class per line (like coco.names)."""
    if value.isdigit():
        return int(value)
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{value}: neither a class count nor a class-names file")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{value}: the class-names file is empty")
    return names


def _class_names(value: int | list[str] | None) -> list[str] | None:
    """`--classes` where only names mean something (a count names no class)."""
    if isinstance(value, int):
        raise ValueError(
            f"--classes {value}: a count names no class; give a class-names file (one name per "
            "line), or leave --classes out for the names in the data"
        )
    return value


def _size(values: list[int]) -> tuple[int, int]:
    if len(values) not in (1, 2):
        raise ValueError(f"--input-size takes one or two numbers, got {values}")
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def cmd_summary(args) -> None:
    from attnyolo.engine.summary import attention_table, format_table, summarize

    if args.model:
        table = {"--input-size": args.input_size, "--classes": args.classes}
        table.update({"--attention": args.attention, "--phi-original": args.phi_original or None})
        given = [flag for flag, value in table.items() if value is not None]
        if given:
            raise ValueError(
                f"{', '.join(given)}: settings of the attention table; a model file describes "
                "itself"
            )
        from attnyolo.models import load_detector

        model = load_detector(args.model)
        info = summarize(model)
        info.update(
            classes=model.class_names,
            anchors=[list(a) for a in model.anchors],
            anchor_masks=[list(m) for m in model.anchor_masks],
            xy_scale=model.xy_scale,
            attention_positions=list(model.attention_positions) if model.attention else [],
        )
        if args.json:
            print(json.dumps(info, indent=2))
            return
        anchors = "  ".join(f"{w:g},{h:g}" for w, h in model.anchors)
        print(
            f"{args.model}: YOLOv4-tiny, attention {info['attention']}"
            f"{' at ' + ', '.join(info['attention_positions']) if model.attention else ''}, "
            f"input {'x'.join(map(str, model.input_size))}\n"
            f"classes ({model.num_classes}): {', '.join(model.class_names)}\n"
            f"anchors: {anchors}; masks {info['anchor_masks']}; xy scale {model.xy_scale:g}\n"
            f"params {info['params']:,} (trainable {info['trainable_params']:,}), "
            f"{info['flops'] / 1e9:.2f} GFLOPs"
        )
        return
    from attnyolo.layers import attention_names

    attentions = args.attention if args.attention else [None, *attention_names()]
    classes = 80 if args.classes is None else args.classes
    rows = attention_table(
        _size(args.input_size or [416]), classes, attentions, latency=not args.no_latency
    )
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))


def _print_detections(result, class_names) -> None:
    """One line per image: what was found (the frames of a video are not listed)."""
    if "frame" in result.item.info:
        return
    records = result.detections.to_records(class_names)
    found = ", ".join(f"{d['class_name']} {d['score']:.2f}" for d in records[:10]) or "nothing"
    more = len(records) - 10
    print(f"{result.item.name}: {found}{f' (+{more} more)' if more > 0 else ''}")


def _files_summary(paths: list[str]) -> str:
    """Files written, a folder with many of them as `folder/ (N files)`."""
    by_folder: dict[str, list[str]] = {}
    for path in paths:
        by_folder.setdefault(str(Path(path).parent), []).append(path)
    parts = []
    for folder, files in by_folder.items():
        parts += files if len(files) <= 3 else [f"{folder}/ ({len(files)} files)"]
    return ", ".join(parts)


def cmd_predict(args) -> None:
    from attnyolo.engine.predict import run_predict

    document = run_predict(
        args.model,
        args.sources,
        output_dir=args.output,
        draw=not args.no_draw,
        save_txt=args.save_txt,
        save_json=args.save_json,
        crop=args.crop,
        count=args.count,
        classes=args.classes,
        progress=not args.no_progress,
        on_result=_print_detections,
        confidence=args.confidence,
        nms_iou=args.nms_iou,
        letterbox=args.letterbox,
        resize_filter=args.resize_filter,
        max_per_class=args.max_per_class,
        max_detections=args.max_detections,
        batch_size=args.batch_size,
    )
    for line in document.get("count_lines", []):
        print(line)
    print("wrote " + _files_summary(document["written"]))
    failed, done = len(document["failed"]), len(document["images"])
    if failed:
        print(
            f"warning: {failed} of {failed + done} image(s) could not be read and were skipped "
            "(listed above and in detections.json)",
            file=sys.stderr,
        )
    if not done:
        raise SystemExit("error: no image could be read")


def cmd_fps(args) -> None:
    from attnyolo.engine.fps import format_fps, measure_fps
    from attnyolo.engine.predict import Predictor

    predictor = Predictor(
        args.model,
        confidence=args.confidence,
        nms_iou=args.nms_iou,
        letterbox=args.letterbox,
        batch_size=args.batch_size,
    )
    report = measure_fps(
        predictor,
        args.images,
        batch_size=args.batch_size,
        repeats=args.repeats,
        warmup=args.warmup,
        end_to_end=not args.network_only,
    )
    print(json.dumps(report, indent=2) if args.json else format_fps(report))


def cmd_evaluate(args) -> None:
    from attnyolo.engine.evaluate import evaluate_files, format_table

    evaluation = evaluate_files(
        args.data,
        model=args.model,
        detections=args.detections,
        split=args.split,
        class_names=_class_names(args.classes),
        output_dir=args.output,
        plots=not args.no_plots,
        map_out=args.map_out,
        detection_options={
            "confidence": args.confidence,
            "nms_iou": args.nms_iou,
            "max_per_class": args.max_per_class,
            "max_detections": args.max_detections,
            "letterbox": args.letterbox,
            "resize_filter": args.resize_filter,
            "batch_size": args.batch_size,
        },
        iou_threshold=args.iou,
        use_07_metric=args.voc07,
        score_threshold=args.score_threshold,
        protocol=args.protocol,
        coco=not args.no_coco,
        coco_engine=args.coco_engine,
    )
    print(format_table(evaluation.report))
    print(
        f"report: {Path(args.output) / 'report.md'} (and report.json, plots/, detections_coco.json)"
    )


def cmd_train(args) -> None:
    from attnyolo.engine.train import parse_override, resolve_config, train

    if args.resume:
        given = [
            "--" + key.replace("_", "-")
            for key, value in vars(args).items()
            if key not in ("command", "func", "resume") and value is not None and value is not False
        ]
        if given:
            raise ValueError(
                f"--resume continues a run with the settings it was started with (its "
                f"config.yaml); leave out {', '.join(given)}"
            )
        run = train(resume=args.resume)
    else:
        overrides = dict(parse_override(item) for item in args.set or [])
        for key in (
            "data",
            "attention",
            "epochs",
            "time",
            "batch_size",
            "weights",
            "name",
            "output",
        ):
            value = getattr(args, key)
            if value is not None:
                overrides[key] = value
        if args.input_size:
            overrides["input_size"] = list(_size(args.input_size))
        if args.classes is not None:
            overrides["classes"] = args.classes
        if args.distribute is not None:
            overrides["distribute"] = args.distribute
        if args.freeze_from_scratch:
            overrides["freeze_train"] = overrides["freeze_from_scratch"] = True
        run = train(resolve_config(args.config, recipe=args.recipe, **overrides))
    written = [
        name
        for name in ("weights/last.keras", "weights/best.keras", "log.csv", "loss.png", "map.png")
        if (run / name).is_file()
    ]
    if (run / "evaluation" / "report.md").is_file():
        written.append("evaluation/report.md")
    print(f"run folder: {run} ({', '.join(written) or 'nothing written yet'})")


def cmd_quickstart(args) -> None:
    from attnyolo.engine.quickstart import quickstart

    result = quickstart(
        args.output,
        images=args.images,
        epochs=args.epochs,
        attention=args.attention,
        seed=args.seed,
        minutes=args.minutes,
        colour=args.colour,
    )
    print(
        f"\nquickstart finished in {result['seconds'] / 60:.1f} min: test mAP@0.5 = "
        f"{result['test_map50'] * 100:.1f}%\n"
        f"  data:        {result['data']}\n"
        f"  training:    {result['run']} (log.csv, loss.png)\n"
        f"  model:       {result['model']}\n"
        f"  evaluation:  {result['evaluation']}/report.md\n"
        f"  predictions: {result['predictions']}/"
    )


def cmd_ablate(args) -> None:
    from attnyolo.engine.ablate import ablate, format_markdown
    from attnyolo.engine.config import parse_override

    _resolve_phi(args)
    minutes = args.minutes
    if minutes is None and args.epochs is None and not args.runs:
        minutes = ABLATE_MINUTES
    report = ablate(
        args.output,
        data=args.data,
        attentions=args.attention,
        seeds=args.seeds,
        minutes=minutes,
        epochs=None if minutes is not None else args.epochs,
        recipe=args.recipe,
        overrides=dict(parse_override(item) for item in args.set or []),
        runs=args.runs or (),
        split=args.split,
        train_split=args.train_split,
        samples=args.bootstrap,
        latency=not args.no_latency,
    )
    print("\n" + format_markdown(report))
    print(f"written: {args.output}/results.md, results.json, results.png")


def cmd_anchors(args) -> None:
    from attnyolo.engine.anchors import run_anchors

    result = run_anchors(
        args.data, args.split, _size(args.input_size), args.k, args.seed, args.output
    )
    print(result.get("summary", result))


def cmd_data_split(args) -> None:
    from attnyolo.data.split import format_split_table, split_voc

    result = split_voc(
        args.root,
        trainval_percent=args.trainval,
        train_percent=args.train,
        seed=args.seed,
        class_names=_class_names(args.classes),
        lines_dir=args.lines,
    )
    print(format_split_table(result))
    for key in ("lines_train", "lines_val", "lines_classes"):
        if key in result["files"]:
            print(f"wrote {result['files'][key]}")


def cmd_data_shapes(args) -> None:
    from attnyolo.data.synthetic import generate_shapes

    root = generate_shapes(
        args.output,
        num_images=args.images,
        size=args.size,
        seed=args.seed,
        splits=args.splits,
        colour=args.colour,
    )
    print(f"shapes ({args.colour} colours): {root} (classes.txt, ImageSets/Main/*.txt)")


def cmd_data_convert(args) -> None:
    from attnyolo.data.convert import convert_dataset, format_conversion

    report = convert_dataset(
        args.source,
        args.to,
        args.output,
        splits=args.split,
        classes=args.classes,
        link=args.link,
        drop_difficult=args.drop_difficult,
        overwrite=args.overwrite,
    )
    print(format_conversion(report))


def cmd_create(args) -> None:
    from attnyolo.engine.config import parse_attention
    from attnyolo.models import YOLOv4Tiny, save_detector

    attention, options = parse_attention(args.attention)
    model = YOLOv4Tiny(
        classes=args.classes,
        input_size=_size(args.input_size),
        attention=attention,
        attention_kwargs=options,
        attention_positions=args.attention_positions,
        xy_scale=args.xy_scale,
    )
    save_detector(model, args.output)
    print(f"wrote untrained {model.attention or 'no-attention'} YOLOv4-tiny to {args.output}")


def cmd_darknet_import(args) -> None:
    from attnyolo.engine.config import parse_attention
    from attnyolo.models import model_from_darknet, save_detector

    attention, options = parse_attention(args.attention)
    extra = {"attention": attention, "attention_kwargs": options}
    if args.input_size:
        extra["input_size"] = _size(args.input_size)
    model, report = model_from_darknet(args.cfg, args.weights, classes=args.names, **extra)
    save_detector(model, args.output)
    if report is not None:
        print(report)
    print(f"wrote {args.output}")


def cmd_darknet_export(args) -> None:
    from attnyolo.models import load_detector, save_darknet

    model = load_detector(args.model)
    prefix = Path(args.output)
    save_darknet(model, prefix.with_suffix(".weights"), prefix.with_suffix(".cfg"))
    prefix.with_suffix(".names").write_text("\n".join(model.class_names) + "\n")
    print(f"wrote {prefix.with_suffix('.cfg')}, .weights and .names")


def cmd_heatmap(args) -> None:
    from attnyolo.engine.explain import cmd_heatmap as run

    run(args)


def cmd_attention(args) -> None:
    from attnyolo.engine.explain import cmd_attention as run

    run(args)


def _add_heatmap_parser(subparsers) -> None:
    """`attnyolo heatmap MODEL IMAGE [-o OUT.png] [--letterbox/--no-letterbox]`."""
    p = subparsers.add_parser(
        "heatmap",
        help="where the detector sees objects: objectness over the image (the original's heatmap)",
    )
    p.add_argument("model", help="a .keras detector file")
    p.add_argument("image", help="an image file")
    p.add_argument("-o", "--output", help="the PNG to write (default: IMAGE-NAME_heatmap.png)")
    _add_geometry_arguments(p)
    p.set_defaults(func=cmd_heatmap)


def _add_attention_parser(subparsers) -> None:
    """`attnyolo attention MODEL IMAGE [-o OUT_DIR] [--letterbox/--no-letterbox] [--top K]`."""
    p = subparsers.add_parser(
        "attention",
        help="what each attention layer weights on an image: one figure per layer + JSON stats",
    )
    p.add_argument("model", help="a .keras detector file with attention")
    p.add_argument("image", help="an image file")
    p.add_argument("-o", "--output", help="the folder to write (default: IMAGE-NAME_attention)")
    _add_geometry_arguments(p)
    p.add_argument("--top", type=int, default=10, metavar="K", help="channels to label per layer")
    p.set_defaults(func=cmd_attention)


def _add_geometry_arguments(p: argparse.ArgumentParser) -> None:
    from attnyolo.data.images import RESIZE_FILTERS

    p.add_argument(
        "--letterbox",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the aspect ratio, padding with grey (or stretch: --no-letterbox); default: as "
        "the model was trained, else stretch",
    )
    p.add_argument(
        "--resize-filter",
        choices=list(RESIZE_FILTERS),
        default=None,
        help="bicubic resize: opencv or pillow; default: the model's",
    )


def build_parser() -> argparse.ArgumentParser:
    from attnyolo.data.images import DEFAULT_RESIZE_FILTER, RESIZE_FILTERS

    parser = argparse.ArgumentParser(
        prog="attnyolo",
        description="Attention-augmented YOLOv4-tiny (SE, CBAM, ECA, Coordinate Attention).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "summary", help="parameters and FLOPs per attention type, or of a model file"
    )
    p.add_argument("model", nargs="?", help="a .keras detector file to describe instead")
    p.add_argument("--input-size", type=int, nargs="+", metavar="N", help="default 416")
    p.add_argument("--classes", type=_classes, help="a count or a names file (default 80)")
    _add_attention_arguments(p, nargs="+")
    p.add_argument(
        "--no-latency",
        action="store_true",
        help="skip the latency column (each model's forward pass timed at batch 1 here)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser(
        "predict",
        help="detect objects in images, folders, globs, videos or a webcam; writes labelled "
        "images/videos, detections.json and what is asked",
    )
    p.add_argument("model", help="a detector file: .keras, .onnx, .tflite or a SavedModel folder")
    p.add_argument(
        "sources",
        nargs="+",
        help="image files, folders (searched recursively), globs ('photos/**/*.jpg'), video "
        "files, or a webcam index (0)",
    )
    p.add_argument("-o", "--output", default="predictions", help="output folder")
    p.add_argument("--confidence", type=float, default=0.5)
    p.add_argument("--nms-iou", type=float, default=0.3)
    p.add_argument(
        "--letterbox",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the aspect ratio, padding with grey (or stretch: --no-letterbox); default: as "
        "the model was trained (its file says: attnyolo's training letterboxes), else stretch",
    )
    p.add_argument(
        "--resize-filter",
        choices=list(RESIZE_FILTERS),
        default=None,
        help="bicubic resize: opencv (cv2) or pillow (PIL, the original's); default: the one the "
        f"model was trained with (its file says), else {DEFAULT_RESIZE_FILTER}",
    )
    p.add_argument("--max-per-class", type=int, default=100)
    p.add_argument("--max-detections", type=int, default=None, help="at most this many per image")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    p.add_argument(
        "--classes", nargs="+", default=None, metavar="CLASS", help="keep only these (names or ids)"
    )
    p.add_argument("--no-draw", action="store_true", help="no labelled images or videos")
    p.add_argument(
        "--save-txt",
        nargs="?",
        const="yolo",
        choices=["yolo", "voc"],
        default=None,
        help="a text file per image in labels/: yolo (class cx cy w h score, normalised; the "
        "default) or voc (the original's detection-results lines)",
    )
    p.add_argument("--save-json", action="store_true", help="COCO results: detections_coco.json")
    p.add_argument("--crop", action="store_true", help="each detection cut out to crops/<class>/")
    p.add_argument("--count", action="store_true", help="per-class counts, printed and counts.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "fps",
        help="images per second and ms per image: network only and end to end (read, resize, "
        "network, decode, NMS, draw)",
    )
    p.add_argument("model", help="a detector file: .keras, .onnx, .tflite or a SavedModel folder")
    p.add_argument(
        "images",
        nargs="*",
        help="image files for the end-to-end figures (default: a synthetic 640x480 JPEG)",
    )
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--repeats", type=int, default=30, help="timed runs of each job")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first")
    p.add_argument("--network-only", action="store_true", help="only the forward pass")
    p.add_argument("--confidence", type=float, default=0.5)
    p.add_argument("--nms-iou", type=float, default=0.3)
    p.add_argument("--letterbox", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.set_defaults(func=cmd_fps)

    _add_heatmap_parser(sub)
    _add_attention_parser(sub)
    from attnyolo.engine.export import add_export_parser  # framework-free until it runs

    add_export_parser(sub)

    p = sub.add_parser(
        "evaluate",
        help="VOC and COCO mAP of a model on a data split, or of given detections",
        description="With a model: detection over the split with the original get_map.py's "
        "settings, then VOC mAP, P/R/F1, LAMR and the COCO figures. Without one: --detections "
        "(a COCO results JSON, or a folder of the original's detection-results/*.txt) against "
        "the ground truth; --data may then be the original's map_out folder, whose "
        "detection-results/ are the default detections.",
    )
    p.add_argument(
        "model",
        nargs="?",
        help="a detector file: .keras, .onnx, .tflite or a SavedModel folder (omit with "
        "--detections)",
    )
    p.add_argument(
        "--data",
        required=True,
        help="VOC root, COCO JSON, YOLO data YAML, annotation-lines file, attnyolo data YAML, "
        "or (without a model) the original's map_out folder",
    )
    p.add_argument("--split", default="test", help="default: test")
    p.add_argument("--detections", help="COCO results JSON or folder of per-image .txt files")
    p.add_argument(
        "--classes",
        type=_classes,
        default=None,
        help="class-names file for the data (without a model)",
    )
    p.add_argument("-o", "--output", default="evaluation", help="report folder")
    p.add_argument("--iou", type=float, default=0.5, help="VOC IoU threshold (default 0.5)")
    p.add_argument("--voc07", action="store_true", help="VOC2007 11-point AP")
    p.add_argument(
        "--protocol",
        choices=["voc", "original", "eval_callback"],
        default="voc",
        help="voc (default): get_map.py's detection settings, the VOC devkit's figures; "
        "original: the original get_map.py to the number (with a model: Pillow resizing and "
        "the integer boxes and cut scores it writes; its arithmetic: IoU +1 on the boxes as "
        "written, P/R/F1 read at the top detection when none reaches --score-threshold, LAMR 0 "
        "for a class never detected); eval_callback: the original training's EvalCallback "
        "(confidence 0.05, letterbox, top 100 boxes per image), scored as original",
    )
    p.add_argument(
        "--score-threshold",
        type=float,
        default=0.5,
        help="score for precision/recall/F1 (default 0.5)",
    )
    protocol_default = "default: the --protocol's"
    p.add_argument(
        "--confidence", type=float, help=f"0.001 for voc and original ({protocol_default})"
    )
    p.add_argument("--nms-iou", type=float, help=f"0.5 ({protocol_default})")
    p.add_argument("--max-per-class", type=int, help=f"100 ({protocol_default})")
    p.add_argument("--max-detections", type=int, help="boxes per image (eval_callback: 100)")
    p.add_argument(
        "--letterbox",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the aspect ratio (eval_callback) or stretch (original); voc: as the model was "
        "trained (its file says: attnyolo's training letterboxes), else stretch",
    )
    p.add_argument(
        "--resize-filter",
        choices=list(RESIZE_FILTERS),
        help="opencv (voc) or pillow (original, eval_callback)",
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--no-coco", action="store_true", help="skip the COCO figures")
    p.add_argument(
        "--coco-engine", default="auto", choices=["auto", "faster-coco-eval", "pycocotools"]
    )
    p.add_argument("--no-plots", action="store_true")
    p.add_argument(
        "--map-out", action="store_true", help="also write the original's map_out text files"
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("train", help="train a detector (the original train.py, configured)")
    p.add_argument("--config", help="a YAML of settings (see attnyolo/configs/train.yaml)")
    p.add_argument("--data", help="VOC root, COCO JSON, YOLO data YAML, annotation lines, ...")
    p.add_argument("--classes", type=_classes, default=None, help="class-names file")
    _add_attention_arguments(p, default=None)
    p.add_argument("--input-size", type=int, nargs="+", metavar="N")
    p.add_argument(
        "--recipe",
        choices=("original", "fast"),
        help="original: the original train.py exactly (the defaults); fast: short CPU runs (see "
        "attnyolo/configs/fast.yaml)",
    )
    p.add_argument(
        "--time",
        type=float,
        metavar="MINUTES",
        help="a budget for the whole run: the schedule fits it and the run ends on time",
    )
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--weights", help="start from a .keras model or Darknet .weights")
    p.add_argument("--output", help="runs folder (default runs/train)")
    p.add_argument("--name", help="run folder name")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any setting of train.yaml, e.g. --set optimizer=adam (repeatable)",
    )
    p.add_argument(
        "--distribute",
        nargs="?",
        const=True,
        default=None,
        metavar="STRATEGY",
        help="data-parallel training: TensorFlow MirroredStrategy or JAX DataParallel; or name "
        "one: mirrored, data_parallel",
    )
    p.add_argument(
        "--freeze-from-scratch",
        action="store_true",
        help="train a frozen phase although no --weights are given (the backbone stays random "
        "for freeze_epoch epochs; refused without this flag)",
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run where it stopped")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "quickstart",
        help="generate the synthetic shapes data, train, evaluate, "
        "predict: the whole workflow with no download",
    )
    p.add_argument("-o", "--output", default="runs/quickstart")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument(
        "--minutes",
        type=float,
        default=10.0,
        help="training budget (default 10; the whole quickstart takes about a minute more)",
    )
    p.add_argument("--epochs", type=int, default=None, help="train this many epochs instead")
    p.add_argument(
        "--colour",
        choices=("class", "random"),
        default="class",
        help="class (default): each class its own colour, readable off one pixel; random: "
        "only the shape tells the class",
    )
    _add_attention_arguments(p, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_quickstart)

    p = sub.add_parser(
        "ablate",
        help="did attention help? train attention types x seeds on one recipe and budget, "
        "compare with none (paired bootstrap intervals)",
    )
    p.add_argument(
        "--data",
        default="shapes",
        help="a data set as `train --data` takes it, or shapes (default): the built-in shapes "
        "with colours independent of the class",
    )
    _add_attention_arguments(p, nargs="+")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="N", help="default 0 1 2"
    )
    p.add_argument(
        "--minutes",
        type=float,
        help=f"training budget of each run (default {ABLATE_MINUTES:g} unless --epochs or "
        "only --runs)",
    )
    p.add_argument("--epochs", type=int, help="train this many epochs per run instead")
    p.add_argument("--recipe", default="fast", help="training recipe (default fast)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any train.yaml setting")
    p.add_argument(
        "--runs",
        nargs="+",
        metavar="RUN_DIR",
        help="finished run folders to include (trained "
        "elsewhere); evaluated here on the same data and split",
    )
    p.add_argument("-o", "--output", default="runs/ablate", help="the ablation folder")
    p.add_argument("--split", default="test", help="evaluation split (default test)")
    p.add_argument("--train-split", default="trainval", help="training split (default trainval)")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="N", help="bootstrap rounds")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("anchors", help="k-means anchors (1 - IoU distance) for a data set")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--input-size", type=int, nargs="+", default=[416], metavar="N")
    p.add_argument("-k", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", default="anchors", help="folder for anchors.txt + plot")
    p.set_defaults(func=cmd_anchors)

    p = sub.add_parser("data", help="data set tools")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("split", help="write VOC ImageSets (as voc_annotation.py), count objects")
    q.add_argument("root", help="a VOC root (Annotations/, JPEGImages/)")
    q.add_argument("--trainval", type=float, default=0.9)
    q.add_argument("--train", type=float, default=0.9)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--classes", type=_classes, default=None)
    q.add_argument(
        "--lines",
        metavar="DIR",
        help="also write the original's 2007_train.txt / 2007_val.txt here",
    )
    q.set_defaults(func=cmd_data_split)
    q = dsub.add_parser(
        "convert",
        help="convert a data set (any form --data takes) to YOLO txt, VOC XML or COCO JSON",
        description="Carries every split of the source (or those of --split) into the layout "
        "the target tool reads natively and attnyolo reads back, and reports what the target "
        "format cannot hold (difficult flags in YOLO, fractional boxes in VOC, ...).",
    )
    q.add_argument("source", help="VOC root, COCO root or JSON, YOLO data YAML or root, ...")
    q.add_argument("--to", required=True, choices=["yolo", "voc", "coco"])
    q.add_argument("-o", "--output", required=True, help="a new or empty folder")
    q.add_argument(
        "--split",
        action="append",
        metavar="NAME[=NEW]",
        help="a split to carry, optionally renamed (trainval=train); repeatable; default: all",
    )
    q.add_argument("--classes", help="class-names file (default: the source's names)")
    q.add_argument("--link", action="store_true", help="hard-link images instead of copying")
    q.add_argument(
        "--drop-difficult",
        action="store_true",
        help="leave difficult boxes out (default: kept; YOLO gets them as ordinary boxes)",
    )
    q.add_argument(
        "--overwrite", action="store_true", help="replace an earlier conversion in the folder"
    )
    q.set_defaults(func=cmd_data_convert)
    q = dsub.add_parser(
        "shapes", help="write the built-in synthetic shapes data set (VOC layout), no download"
    )
    q.add_argument("-o", "--output", required=True, help="folder that receives VOC2007/")
    q.add_argument("--images", type=int, default=1000)
    q.add_argument("--size", type=int, default=320, help="image side in pixels (default 320)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument(
        "--splits",
        type=float,
        nargs="+",
        default=[0.8, 0.1, 0.1],
        metavar="F",
        help="train, val[, test] fractions (default 0.8 0.1 0.1)",
    )
    q.add_argument(
        "--colour",
        choices=("class", "random"),
        default="class",
        help="class: each class its own hue family (the quickstart's); random: hue independent "
        "of the class, so only the shape tells it",
    )
    q.set_defaults(func=cmd_data_shapes)

    p = sub.add_parser("create", help="write an untrained detector file")
    p.add_argument("-o", "--output", required=True, help="the .keras file to write")
    p.add_argument("--classes", type=_classes, default=80, help="a count or a names file")
    p.add_argument("--input-size", type=int, nargs="+", default=[416], metavar="N")
    _add_attention_arguments(p, default=None)
    p.add_argument(
        "--attention-positions",
        nargs="+",
        choices=["feat1", "feat2", "p5_upsample"],
        default=["feat1", "feat2", "p5_upsample"],
        help="where attention goes (default: the original's three)",
    )
    p.add_argument("--xy-scale", type=float, default=1.0)
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("darknet", help="import or export Darknet .cfg/.weights")
    dsub = p.add_subparsers(dest="darknet_command", required=True)
    q = dsub.add_parser("import", help="a yolov4-tiny .cfg (+ .weights) into a .keras detector")
    q.add_argument("cfg")
    q.add_argument("weights", nargs="?", help="omit for random initial weights")
    q.add_argument("--names", type=_classes, default=None, help="class-names file, e.g. coco.names")
    _add_attention_arguments(q, default=None)
    q.add_argument("--input-size", type=int, nargs="+", metavar="N", help="default: the cfg's")
    q.add_argument("-o", "--output", required=True, help="the .keras file to write")
    q.set_defaults(func=cmd_darknet_import)
    q = dsub.add_parser("export", help="a .keras detector without attention to .cfg/.weights")
    q.add_argument("model")
    q.add_argument(
        "-o", "--output", required=True, help="path prefix: writes PREFIX.cfg/.weights/.names"
    )
    q.set_defaults(func=cmd_darknet_export)
    return parser


def _plain_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as the plain line the message is (`file: problem`), without Python's
    `path.py:475: DatasetWarning:` prefix and the source line under it."""
    print(f"warning: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow
    # FFmpeg's own lines about a damaged video (`[mjpeg @ 0x...] sof: invalid len`), read by
    # OpenCV when it opens its first video: attnyolo says what it means in one line instead.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    args = build_parser().parse_args(argv)
    _resolve_phi(args)
    warnings.showwarning = _plain_warning
    try:
        args.func(args)
    # Every attnyolo error (ImageError, DarknetError, ModelFileError, SourceError, ...) is a
    # ValueError naming the file; nothing is imported here, so that a command that needs no
    # framework (predict with an ONNX model, data tools) loads none.
    except (OSError, ValueError, RuntimeError) as e:
        if os.environ.get("ATTNYOLO_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
