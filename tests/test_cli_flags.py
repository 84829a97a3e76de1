"""Every flag of every `attnyolo` subcommand reaches the engine.

Each test runs `main([...])` with every flag of one subcommand set to a recognisable value that
is not its default, with the engine function its `cmd_*` calls replaced by a recorder, and says
for each flag what the engine must have received. `check_flags` fails when the parser has a flag
that the test does not set, or does not check: a flag added to the parser needs a line here, and
a flag that the command parses but drops fails its check. No model is built, nothing is trained.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from attnyolo.cli import build_parser, main

# The subcommands that run something, as `check_flags` paths; each has its test below.
TESTED = {
    ("summary",),
    ("predict",),
    ("fps",),
    ("heatmap",),
    ("attention",),
    ("export",),
    ("evaluate",),
    ("train",),
    ("quickstart",),
    ("ablate",),
    ("anchors",),
    ("data", "split"),
    ("data", "convert"),
    ("data", "shapes"),
    ("create",),
    ("darknet", "import"),
    ("darknet", "export"),
}


def leaf_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """`(path, parser)` of every subcommand without subcommands of its own."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for action in subs:
        for name, child in action.choices.items():
            yield from leaf_parsers(child, (*path, name))


def flag_name(action: argparse.Action) -> str:
    """An option's name in the checks: its first long form (`--output` for `-o/--output`)."""
    long = [s for s in action.option_strings if s.startswith("--")]
    return (long or action.option_strings)[0]


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {
        flag_name(a): a
        for a in parser._actions
        if a.option_strings and not isinstance(a, argparse._HelpAction)
    }


def check_flags(path: tuple[str, ...], argvs: list[list[str]], arrived: dict) -> None:
    """`argvs` between them give every option of the subcommand `path` a value other than its
    default, and `arrived` says, for every option, `(what the engine got, what it should get)`."""
    leaf = dict(leaf_parsers(build_parser()))[path]
    defined = options(leaf)
    assert sorted(arrived) == sorted(defined), "each flag of the parser needs exactly one check"
    used, changed = set(), set()
    for argv in argvs:
        assert tuple(argv[: len(path)]) == path
        for token in argv[len(path) :]:
            action = leaf._option_string_actions.get(token.split("=", 1)[0])
            if action is not None:
                used.add(flag_name(action))
        parsed = build_parser().parse_args(argv)
        changed |= {f for f, a in defined.items() if getattr(parsed, a.dest) != a.default}
    assert sorted(used) == sorted(defined), "every flag must be given"
    assert sorted(changed) == sorted(defined), "every flag must get a value other than its default"
    assert {f: got for f, (got, _) in arrived.items()} == {
        f: want for f, (_, want) in arrived.items()
    }


def record(monkeypatch, target: str, returns=None) -> list[dict]:
    """Replaces `target` ("module.name") by a recorder; returns its calls, each the arguments by
    parameter name (positional or keyword as the caller gave them, defaults filled in, `**kwargs`
    merged). The real signature is kept: an argument it does not take fails the call. `returns`:
    the result, or a function of the arguments giving it."""
    module, name = target.rsplit(".", 1)
    signature = inspect.signature(getattr(importlib.import_module(module), name))
    calls = []

    def fake(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        for parameter in signature.parameters.values():
            if parameter.kind is parameter.VAR_KEYWORD:
                arguments.update(arguments.pop(parameter.name, {}))
        calls.append(arguments)
        return returns(arguments) if callable(returns) else returns

    monkeypatch.setattr(target, fake)
    return calls


def run(capsys, argv: list) -> str:
    main([str(a) for a in argv])
    return capsys.readouterr().out


@pytest.fixture
def names(tmp_path) -> Path:
    path = tmp_path / "names.txt"
    path.write_text("cat\ndog\n")
    return path


def test_every_subcommand_has_a_flag_test():
    assert {path for path, _ in leaf_parsers(build_parser())} == TESTED


def test_summary(tmp_path, monkeypatch, capsys, names):
    rows = [{"attention": "ca_original", "params": 5}, {"attention": "se", "params": 6}]
    table = record(monkeypatch, "attnyolo.engine.summary.attention_table", returns=rows)
    monkeypatch.setattr("attnyolo.engine.summary.format_table", lambda rows: "TABLE")
    argv = [
        "summary",
        "--input-size",
        "320",
        "256",
        "--classes",
        str(names),
        "--attention",
        "4",
        "se",
        "--phi-original",
        "--no-latency",
        "--json",
    ]
    printed = json.loads(run(capsys, argv))
    (call,) = table
    check_flags(
        ("summary",),
        [argv],
        {
            "--input-size": (call["input_size"], (320, 256)),
            "--classes": (call["classes"], ["cat", "dog"]),
            "--attention": (call["attentions"][1], "se"),
            "--phi-original": (call["attentions"][0], "ca_original"),
            "--no-latency": (call["latency"], False),
            "--json": (printed, rows),
        },
    )
    assert run(capsys, ["summary"]).strip() == "TABLE"
    assert table[1]["input_size"] == (416, 416) and table[1]["classes"] == 80


def test_summary_of_a_model_file(tmp_path, monkeypatch, capsys):
    model = SimpleNamespace(
        class_names=["cat", "dog"],
        num_classes=2,
        anchors=[(10.0, 14.0), (23.0, 27.0)],
        anchor_masks=[[1], [0]],
        xy_scale=1.05,
        attention="eca",
        attention_positions=("feat1",),
        input_size=(320, 256),
    )
    loaded = record(monkeypatch, "attnyolo.models.load_detector", returns=model)
    counts = {"attention": "eca", "params": 7, "trainable_params": 6, "flops": 2e9}
    monkeypatch.setattr("attnyolo.engine.summary.summarize", lambda m: dict(counts))
    info = json.loads(run(capsys, ["summary", tmp_path / "m.keras", "--json"]))
    assert loaded[0]["path"] == str(tmp_path / "m.keras")
    assert info["classes"] == ["cat", "dog"] and info["xy_scale"] == 1.05
    assert info["attention_positions"] == ["feat1"] and info["params"] == 7
    # the table's settings say nothing about a model file: refused, not ignored
    for flags in (["--input-size", "320"], ["--classes", "3"], ["--attention", "se"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["summary", str(tmp_path / "m.keras"), *flags])
        assert exit_info.value.code == 2
        assert f"error: {flags[0]}" in capsys.readouterr().err


def test_predict(tmp_path, monkeypatch, capsys):
    done = {"images": [{"image": "x.jpg"}], "failed": [], "written": []}
    calls = record(monkeypatch, "attnyolo.engine.predict.run_predict", returns=done)
    argv = [
        "predict",
        str(tmp_path / "m.onnx"),
        str(tmp_path / "x.jpg"),
        str(tmp_path / "images"),
        "0",
        "--output",
        str(tmp_path / "out"),
        "--confidence",
        "0.25",
        "--nms-iou",
        "0.45",
        "--letterbox",
        "--resize-filter",
        "pillow",
        "--max-per-class",
        "7",
        "--max-detections",
        "9",
        "--batch-size",
        "3",
        "--classes",
        "cat",
        "2",
        "--no-draw",
        "--save-txt",
        "--save-json",
        "--crop",
        "--count",
        "--no-progress",
    ]
    second_argv = [
        "predict",
        str(tmp_path / "m.keras"),
        str(tmp_path / "x.jpg"),
        "--no-letterbox",
        "--save-txt",
        "voc",
    ]
    run(capsys, argv)
    run(capsys, second_argv)
    call, second = calls
    assert call["model"] == str(tmp_path / "m.onnx")
    assert call["sources"] == [str(tmp_path / "x.jpg"), str(tmp_path / "images"), "0"]
    check_flags(
        ("predict",),
        [argv, second_argv],
        {
            "--output": (call["output_dir"], str(tmp_path / "out")),
            "--confidence": (call["confidence"], 0.25),
            "--nms-iou": (call["nms_iou"], 0.45),
            "--letterbox": ([call["letterbox"], second["letterbox"]], [True, False]),
            "--resize-filter": ([call["resize_filter"], second["resize_filter"]], ["pillow", None]),
            "--max-per-class": (call["max_per_class"], 7),
            "--max-detections": (call["max_detections"], 9),
            "--batch-size": (call["batch_size"], 3),
            "--classes": (call["classes"], ["cat", "2"]),
            "--no-draw": ([call["draw"], second["draw"]], [False, True]),
            "--save-txt": ([call["save_txt"], second["save_txt"]], ["yolo", "voc"]),
            "--save-json": ([call["save_json"], second["save_json"]], [True, False]),
            "--crop": ([call["crop"], second["crop"]], [True, False]),
            "--count": ([call["count"], second["count"]], [True, False]),
            "--no-progress": ([call["progress"], second["progress"]], [False, True]),
        },
    )


def test_fps(tmp_path, monkeypatch, capsys):
    predictors = record(monkeypatch, "attnyolo.engine.predict.Predictor", returns="PREDICTOR")
    calls = record(monkeypatch, "attnyolo.engine.fps.measure_fps", returns={"network": {}})
    monkeypatch.setattr("attnyolo.engine.fps.format_fps", lambda report: "FPS")
    argv = [
        "fps",
        str(tmp_path / "m.keras"),
        str(tmp_path / "a.jpg"),
        "--batch-size",
        "8",
        "--repeats",
        "11",
        "--warmup",
        "2",
        "--network-only",
        "--confidence",
        "0.2",
        "--nms-iou",
        "0.6",
        "--letterbox",
        "--json",
    ]
    printed = run(capsys, argv)
    made, call = predictors[0], calls[0]
    assert call["predictor"] == "PREDICTOR" and made["model"] == str(tmp_path / "m.keras")
    check_flags(
        ("fps",),
        [argv],
        {
            "--batch-size": ([call["batch_size"], made["batch_size"]], [8, 8]),
            "--repeats": (call["repeats"], 11),
            "--warmup": (call["warmup"], 2),
            "--network-only": (call["end_to_end"], False),
            "--confidence": (made["confidence"], 0.2),
            "--nms-iou": (made["nms_iou"], 0.6),
            "--letterbox": (made["letterbox"], True),
            "--json": (json.loads(printed), {"network": {}}),
        },
    )
    assert call["images"] == [str(tmp_path / "a.jpg")]


def test_heatmap(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("attnyolo.engine.explain._load", lambda args: ("MODEL", "IMAGE"))
    calls = record(
        monkeypatch,
        "attnyolo.engine.explain.objectness_heatmap",
        returns=SimpleNamespace(overlay=lambda path: path),
    )
    argv = [
        "heatmap",
        str(tmp_path / "m.keras"),
        str(tmp_path / "a.jpg"),
        "--output",
        str(tmp_path / "h.png"),
        "--letterbox",
        "--resize-filter",
        "pillow",
    ]
    printed = run(capsys, argv).strip()
    call = calls[0]
    assert (call["model"], call["image"]) == ("MODEL", "IMAGE")
    check_flags(
        ("heatmap",),
        [argv],
        {
            "--output": (printed, f"wrote {tmp_path / 'h.png'}"),
            "--letterbox": (call["letterbox"], True),
            "--resize-filter": (call["resize_filter"], "pillow"),
        },
    )


def test_attention(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("attnyolo.engine.explain._load", lambda args: ("MODEL", "IMAGE"))
    calls = record(monkeypatch, "attnyolo.engine.explain.attention_report", returns=["R"])
    saved = record(
        monkeypatch, "attnyolo.engine.explain.save_attention_figures", returns=[tmp_path / "f"]
    )
    argv = [
        "attention",
        str(tmp_path / "m.keras"),
        str(tmp_path / "a.jpg"),
        "--output",
        str(tmp_path / "maps"),
        "--no-letterbox",
        "--resize-filter",
        "pillow",
        "--top",
        "4",
    ]
    run(capsys, argv)
    call, save = calls[0], saved[0]
    assert call["source"] == "m.keras" and save["reports"] == ["R"]
    check_flags(
        ("attention",),
        [argv],
        {
            "--output": (save["out_dir"], tmp_path / "maps"),
            "--letterbox": (call["letterbox"], False),
            "--resize-filter": (call["resize_filter"], "pillow"),
            "--top": (save["top"], 4),
        },
    )


def test_export(tmp_path, monkeypatch, capsys):
    calls = record(monkeypatch, "attnyolo.engine.export.export_model", returns="RESULT")
    monkeypatch.setattr("attnyolo.engine.export.format_result", lambda result: result)
    argv = [
        "export",
        str(tmp_path / "m.keras"),
        "--format",
        "tflite",
        "--output",
        str(tmp_path / "m.tflite"),
        "--quantize",
        "int8",
        "--image",
        str(tmp_path / "a.jpg"),
        "--opset",
        "17",
    ]
    assert run(capsys, argv).strip() == "RESULT"
    call = calls[0]
    check_flags(
        ("export",),
        [argv],
        {
            "--format": (call["format"], "tflite"),
            "--output": (call["output"], str(tmp_path / "m.tflite")),
            "--quantize": (call["tflite_quantization"], "int8"),
            "--image": (call["image"], str(tmp_path / "a.jpg")),
            "--opset": (call["opset"], 17),
        },
    )


def test_evaluate(tmp_path, monkeypatch, capsys, names):
    calls = record(
        monkeypatch,
        "attnyolo.engine.evaluate.evaluate_files",
        returns=SimpleNamespace(report={}),
    )
    monkeypatch.setattr("attnyolo.engine.evaluate.format_table", lambda report: "TABLE")
    argv = [
        "evaluate",
        str(tmp_path / "m.keras"),
        "--data",
        str(tmp_path / "voc"),
        "--split",
        "val",
        "--detections",
        str(tmp_path / "dets.json"),
        "--classes",
        str(names),
        "--output",
        str(tmp_path / "report"),
        "--iou",
        "0.75",
        "--voc07",
        "--protocol",
        "eval_callback",
        "--score-threshold",
        "0.4",
        "--confidence",
        "0.05",
        "--nms-iou",
        "0.6",
        "--max-per-class",
        "50",
        "--max-detections",
        "100",
        "--letterbox",
        "--resize-filter",
        "pillow",
        "--batch-size",
        "2",
        "--no-coco",
        "--coco-engine",
        "pycocotools",
        "--no-plots",
        "--map-out",
    ]
    no_letterbox = ["evaluate", "--data", str(tmp_path / "voc"), "--no-letterbox"]
    run(capsys, argv)
    run(capsys, no_letterbox)
    call, second = calls
    options = call["detection_options"]
    assert call["model"] == str(tmp_path / "m.keras") and second["model"] is None
    check_flags(
        ("evaluate",),
        [argv, no_letterbox],
        {
            "--data": (call["data"], str(tmp_path / "voc")),
            "--split": (call["split"], "val"),
            "--detections": (call["detections"], str(tmp_path / "dets.json")),
            "--classes": (call["class_names"], ["cat", "dog"]),
            "--output": (call["output_dir"], str(tmp_path / "report")),
            "--iou": (call["iou_threshold"], 0.75),
            "--voc07": (call["use_07_metric"], True),
            "--protocol": (call["protocol"], "eval_callback"),
            "--score-threshold": (call["score_threshold"], 0.4),
            "--confidence": (options["confidence"], 0.05),
            "--nms-iou": (options["nms_iou"], 0.6),
            "--max-per-class": (options["max_per_class"], 50),
            "--max-detections": (options["max_detections"], 100),
            "--letterbox": (
                [c["detection_options"]["letterbox"] for c in calls],
                [True, False],
            ),
            "--resize-filter": (options["resize_filter"], "pillow"),
            "--batch-size": (options["batch_size"], 2),
            "--no-coco": (call["coco"], False),
            "--coco-engine": (call["coco_engine"], "pycocotools"),
            "--no-plots": (call["plots"], False),
            "--map-out": (call["map_out"], True),
        },
    )


def test_train(tmp_path, monkeypatch, capsys, names):
    from attnyolo.engine.config import TrainConfig

    calls = record(monkeypatch, "attnyolo.engine.train.train", returns=tmp_path / "run")
    data = tmp_path / "voc"
    data.mkdir()
    weights = tmp_path / "start.keras"
    weights.write_bytes(b"")
    config_file = tmp_path / "settings.yaml"
    config_file.write_text("mosaic: 0.25\n")  # the default 0.5, the fast recipe's 1.0
    argv = [
        "train",
        "--config",
        str(config_file),
        "--data",
        str(data),
        "--classes",
        str(names),
        "--attention",
        "4",
        "--phi-original",
        "--input-size",
        "288",
        "--recipe",
        "fast",
        "--time",
        "5",
        "--epochs",
        "12",
        "--batch-size",
        "4",
        "--weights",
        str(weights),
        "--output",
        str(tmp_path / "runs"),
        "--name",
        "flags",
        "--set",
        "seed=7",
        "--set",
        "hsv=[0.2, 0.5, 0.3]",
        "--distribute",
        "--freeze-from-scratch",
    ]
    resume = ["train", "--resume", str(tmp_path / "runs" / "old")]
    out = run(capsys, argv)
    assert f"run folder: {tmp_path / 'run'}" in out
    run(capsys, resume)
    first, resumed = calls
    config = first["config"]
    assert isinstance(config, TrainConfig) and first["resume"] is None
    check_flags(
        ("train",),
        [argv, resume],
        {
            "--config": (config["mosaic"], 0.25),
            "--data": (config["data"], str(data)),
            "--classes": (config["classes"], ["cat", "dog"]),
            "--attention": (config["attention"] is not None, True),
            "--phi-original": (config["attention"], "ca_original"),
            "--input-size": (config["input_size"], [288, 288]),
            "--recipe": ((config["recipe"], config["optimizer"]), ("fast", "adamw")),
            "--time": (config["time"], 5),
            "--epochs": (config["epochs"], 12),
            "--batch-size": (config["batch_size"], 4),
            "--weights": (config["weights"], str(weights)),
            "--output": (config["output"], str(tmp_path / "runs")),
            "--name": (config["name"], "flags"),
            "--set": ((config["seed"], config["hsv"]), (7, [0.2, 0.5, 0.3])),
            "--distribute": (config["distribute"], True),
            "--freeze-from-scratch": (
                (config["freeze_train"], config["freeze_from_scratch"]),
                (True, True),
            ),
            "--resume": (
                (resumed["resume"], resumed["config"]),
                (str(tmp_path / "runs" / "old"), None),
            ),
        },
    )


def test_train_resume_refuses_settings(tmp_path, monkeypatch, capsys):
    calls = record(monkeypatch, "attnyolo.engine.train.train", returns=tmp_path / "run")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--resume", str(tmp_path / "old"), "--epochs", "5", "--time", "2"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --resume") and "\n" not in err
    assert "leave out --time, --epochs" in err
    assert not calls


@pytest.mark.parametrize(
    "settings, message",
    [
        (["--classes", "2"], "a count names no class"),
        (["--classes", "0"], "a count names no class"),
        (["--data", "MISSING"], "MISSING"),
    ],
)
def test_train_errors_are_one_line_and_make_no_run_folder(
    tmp_path, monkeypatch, capsys, settings, message
):
    import cv2

    monkeypatch.chdir(tmp_path)
    (tmp_path / "voc").mkdir()
    threads = cv2.getNumThreads()  # the real train() sets OpenCV's threads before loading data
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "--data", "voc", "--output", "runs", *settings])
    finally:
        cv2.setNumThreads(threads)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["voc"]


def test_ablate(tmp_path, monkeypatch, capsys):
    report = {
        "rows": [],
        "ranking": [],
        "undecided": [],
        "samples": 7,
        "level": 0.95,
        "test_images": 0,
    }
    calls = record(monkeypatch, "attnyolo.engine.ablate.ablate", returns=report)
    timed = [
        "ablate",
        "--data",
        str(tmp_path / "voc"),
        "--attention",
        "4",
        "se",
        "--phi-original",
        "--seeds",
        "5",
        "6",
        "--minutes",
        "2.5",
        "--recipe",
        "original",
        "--set",
        "batch_size=4",
        "--output",
        str(tmp_path / "abl"),
        "--split",
        "val",
        "--train-split",
        "train",
        "--bootstrap",
        "7",
        "--no-latency",
    ]
    run(capsys, timed)
    finished = ["ablate", "--epochs", "3", "--runs", str(tmp_path / "r1"), str(tmp_path / "r2")]
    out = run(capsys, finished)
    assert "results.md" in out
    call, other = calls
    check_flags(
        ("ablate",),
        [timed, finished],
        {
            "--data": (call["data"], str(tmp_path / "voc")),
            "--attention": (call["attentions"][1], "se"),
            "--phi-original": (call["attentions"][0], "ca_original"),
            "--seeds": (call["seeds"], [5, 6]),
            "--minutes": ((call["minutes"], call["epochs"]), (2.5, None)),
            "--epochs": ((other["minutes"], other["epochs"]), (None, 3)),
            "--recipe": (call["recipe"], "original"),
            "--set": (call["overrides"], {"batch_size": 4}),
            "--runs": (other["runs"], [str(tmp_path / "r1"), str(tmp_path / "r2")]),
            "--output": (call["output"], str(tmp_path / "abl")),
            "--split": (call["split"], "val"),
            "--train-split": (call["train_split"], "train"),
            "--bootstrap": (call["samples"], 7),
            "--no-latency": (call["latency"], False),
        },
    )
    # Without a budget or runs: the default budget.
    run(capsys, ["ablate"])
    assert calls[-1]["minutes"] == 10.0 and calls[-1]["data"] == "shapes"


def test_quickstart(tmp_path, monkeypatch, capsys):
    result = {
        "seconds": 60.0,
        "test_map50": 0.5,
        "data": "d",
        "run": "r",
        "model": "m",
        "evaluation": "e",
        "predictions": "p",
    }
    calls = record(monkeypatch, "attnyolo.engine.quickstart.quickstart", returns=result)
    argv = [
        "quickstart",
        "--output",
        str(tmp_path / "qs"),
        "--images",
        "40",
        "--minutes",
        "1.5",
        "--epochs",
        "2",
        "--colour",
        "random",
        "--attention",
        "4",
        "--phi-original",
        "--seed",
        "3",
    ]
    run(capsys, argv)
    (call,) = calls
    check_flags(
        ("quickstart",),
        [argv],
        {
            "--output": (call["output"], str(tmp_path / "qs")),
            "--images": (call["images"], 40),
            "--minutes": (call["minutes"], 1.5),
            "--epochs": (call["epochs"], 2),
            "--colour": (call["colour"], "random"),
            "--attention": (call["attention"] is not None, True),
            "--phi-original": (call["attention"], "ca_original"),
            "--seed": (call["seed"], 3),
        },
    )


def test_anchors(tmp_path, monkeypatch, capsys):
    calls = record(monkeypatch, "attnyolo.engine.anchors.run_anchors", returns={"summary": "ok"})
    argv = [
        "anchors",
        "--data",
        str(tmp_path / "voc"),
        "--split",
        "trainval",
        "--input-size",
        "320",
        "256",
        "-k",
        "9",
        "--seed",
        "4",
        "--output",
        str(tmp_path / "anchors"),
    ]
    assert run(capsys, argv).strip() == "ok"
    (call,) = calls
    check_flags(
        ("anchors",),
        [argv],
        {
            "--data": (call["data"], str(tmp_path / "voc")),
            "--split": (call["split"], "trainval"),
            "--input-size": (call["input_size"], (320, 256)),
            "-k": (call["k"], 9),
            "--seed": (call["seed"], 4),
            "--output": (call["output"], str(tmp_path / "anchors")),
        },
    )


def test_data_split(tmp_path, monkeypatch, capsys, names):
    calls = record(monkeypatch, "attnyolo.data.split.split_voc", returns={"files": {}})
    monkeypatch.setattr("attnyolo.data.split.format_split_table", lambda result: "TABLE")
    argv = [
        "data",
        "split",
        str(tmp_path / "voc"),
        "--trainval",
        "0.8",
        "--train",
        "0.7",
        "--seed",
        "5",
        "--classes",
        str(names),
        "--lines",
        str(tmp_path / "lines"),
    ]
    run(capsys, argv)
    (call,) = calls
    assert call["root"] == str(tmp_path / "voc")
    check_flags(
        ("data", "split"),
        [argv],
        {
            "--trainval": (call["trainval_percent"], 0.8),
            "--train": (call["train_percent"], 0.7),
            "--seed": (call["seed"], 5),
            "--classes": (call["class_names"], ["cat", "dog"]),
            "--lines": (call["lines_dir"], str(tmp_path / "lines")),
        },
    )


@pytest.mark.parametrize(
    "command",
    [["data", "split", "ROOT"], ["evaluate", "--data", "ROOT", "--detections", "dets.json"]],
)
def test_a_class_count_where_names_are_needed_is_a_clear_error(
    tmp_path, monkeypatch, capsys, command
):
    # the names come from the data (or a names file); a count names none
    monkeypatch.setattr("attnyolo.data.split.split_voc", None)
    monkeypatch.setattr("attnyolo.engine.evaluate.evaluate_files", None)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--classes", "3"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --classes 3: a count names no class") and "\n" not in err


def test_data_convert(tmp_path, monkeypatch, capsys, names):
    calls = record(monkeypatch, "attnyolo.data.convert.convert_dataset")
    monkeypatch.setattr("attnyolo.data.convert.format_conversion", lambda report: "DONE")
    argv = [
        "data",
        "convert",
        str(tmp_path / "voc"),
        "--to",
        "coco",
        "--output",
        str(tmp_path / "coco"),
        "--split",
        "trainval=train",
        "--split",
        "test",
        "--classes",
        str(names),
        "--link",
        "--drop-difficult",
        "--overwrite",
    ]
    assert run(capsys, argv).strip() == "DONE"
    (call,) = calls
    assert call["src"] == str(tmp_path / "voc")
    check_flags(
        ("data", "convert"),
        [argv],
        {
            "--to": (call["to"], "coco"),
            "--output": (call["output"], str(tmp_path / "coco")),
            "--split": (call["splits"], ["trainval=train", "test"]),
            "--classes": (call["classes"], str(names)),
            "--link": (call["link"], True),
            "--drop-difficult": (call["drop_difficult"], True),
            "--overwrite": (call["overwrite"], True),
        },
    )


def test_data_shapes(tmp_path, monkeypatch, capsys):
    calls = record(monkeypatch, "attnyolo.data.synthetic.generate_shapes", returns=tmp_path)
    argv = [
        "data",
        "shapes",
        "--output",
        str(tmp_path / "shapes"),
        "--images",
        "30",
        "--size",
        "96",
        "--seed",
        "6",
        "--splits",
        "0.6",
        "0.4",
        "--colour",
        "random",
    ]
    run(capsys, argv)
    (call,) = calls
    check_flags(
        ("data", "shapes"),
        [argv],
        {
            "--output": (call["root"], str(tmp_path / "shapes")),
            "--images": (call["num_images"], 30),
            "--size": (call["size"], 96),
            "--seed": (call["seed"], 6),
            "--splits": (call["splits"], [0.6, 0.4]),
            "--colour": (call["colour"], "random"),
        },
    )


def test_create(tmp_path, monkeypatch, capsys, names):
    built = record(
        monkeypatch,
        "attnyolo.models.YOLOv4Tiny",
        returns=lambda arguments: SimpleNamespace(attention=arguments["attention"]),
    )
    saved = record(monkeypatch, "attnyolo.models.save_detector")
    argv = [
        "create",
        "--output",
        str(tmp_path / "m.keras"),
        "--classes",
        str(names),
        "--input-size",
        "320",
        "--attention",
        "4",
        "--phi-original",
        "--xy-scale",
        "1.05",
        "--attention-positions",
        "feat2",
    ]
    with_options = [
        "create",
        "-o",
        str(tmp_path / "c.keras"),
        "--attention",
        "cbam:reduction=16,kernel_size=3",
    ]
    run(capsys, argv)
    run(capsys, with_options)
    (call, second), (save, _) = built, saved
    check_flags(
        ("create",),
        [argv, with_options],
        {
            "--output": (save["path"], str(tmp_path / "m.keras")),
            "--classes": (call["classes"], ["cat", "dog"]),
            "--input-size": (call["input_size"], (320, 320)),
            "--attention": (
                (second["attention"], second["attention_kwargs"]),
                ("cbam", {"reduction": 16, "kernel_size": 3}),
            ),
            "--phi-original": (call["attention"], "ca_original"),
            "--xy-scale": (call["xy_scale"], 1.05),
            "--attention-positions": (call["attention_positions"], ["feat2"]),
        },
    )


def test_darknet_import(tmp_path, monkeypatch, capsys, names):
    model = SimpleNamespace(attention="cbam")
    calls = record(monkeypatch, "attnyolo.models.model_from_darknet", returns=(model, None))
    saved = record(monkeypatch, "attnyolo.models.save_detector")
    argv = [
        "darknet",
        "import",
        str(tmp_path / "y.cfg"),
        str(tmp_path / "y.weights"),
        "--names",
        str(names),
        "--attention",
        "4",
        "--phi-original",
        "--input-size",
        "320",
        "256",
        "--output",
        str(tmp_path / "m.keras"),
    ]
    run(capsys, argv)
    (call,), (save,) = calls, saved
    assert call["cfg"] == str(tmp_path / "y.cfg") and call["weights"] == str(tmp_path / "y.weights")
    assert save["model"] is model
    check_flags(
        ("darknet", "import"),
        [argv],
        {
            "--names": (call["classes"], ["cat", "dog"]),
            "--attention": (call["attention"] is not None, True),
            "--phi-original": (call["attention"], "ca_original"),
            "--input-size": (call["input_size"], (320, 256)),
            "--output": (save["path"], str(tmp_path / "m.keras")),
        },
    )


def test_darknet_export(tmp_path, monkeypatch, capsys):
    model = SimpleNamespace(class_names=["cat", "dog"], attention=None)
    loaded = record(monkeypatch, "attnyolo.models.load_detector", returns=model)
    saved = record(monkeypatch, "attnyolo.models.save_darknet")
    argv = ["darknet", "export", str(tmp_path / "m.keras"), "--output", str(tmp_path / "tiny")]
    run(capsys, argv)
    (load,), (save,) = loaded, saved
    assert load["path"] == str(tmp_path / "m.keras") and save["model"] is model
    check_flags(
        ("darknet", "export"),
        [argv],
        {
            "--output": (
                (save["weights"], save["cfg"], (tmp_path / "tiny.names").read_text()),
                (tmp_path / "tiny.weights", tmp_path / "tiny.cfg", "cat\ndog\n"),
            )
        },
    )
