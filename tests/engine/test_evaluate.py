"""`attnyolo evaluate`: model-free figures against independent references, the model path, the
report files, and bad detection files."""

import contextlib
import io
import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from attnyolo.cli import main
from attnyolo.data import load_dataset
from attnyolo.engine.detection_files import DetectionFileError, read_detections
from attnyolo.engine.evaluate import evaluate_files, evaluate_model
from attnyolo.metrics.coco import STAT_NAMES
from attnyolo.models import YOLOv4Tiny, save_detector

VOC_NAMES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
]  # fmt: skip

pytestmark = pytest.mark.filterwarnings("ignore::attnyolo.data.DatasetWarning")


def fake_detections(objects, image_ids, class_count, seed=0):
    """COCO results from ground-truth objects `(image_id, class, x1, y1, x2, y2)` in continuous
    pixels: most jittered, some missed, some duplicated, plus random false positives."""
    rng = np.random.default_rng(seed)
    results = []
    for image_id, cls, x1, y1, x2, y2 in objects:
        if rng.random() < 0.15:
            continue
        for _ in range(1 + (rng.random() < 0.1)):
            w, h = x2 - x1, y2 - y1
            jx1, jy1, jx2, jy2 = rng.normal(0, 0.08, 4) * [w, h, w, h]
            box = [x1 + jx1, y1 + jy1, max(x1 + jx1 + 1, x2 + jx2), max(y1 + jy1 + 1, y2 + jy2)]
            results.append(
                {
                    "image_id": image_id,
                    "category_id": cls + 1,
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    "score": float(rng.random()),
                }
            )
    for _ in range(len(objects) // 2):
        x, y = rng.uniform(0, 300, 2)
        results.append(
            {
                "image_id": image_ids[int(rng.integers(len(image_ids)))],
                "category_id": int(rng.integers(class_count)) + 1,
                "bbox": [x, y, float(rng.uniform(5, 150)), float(rng.uniform(5, 150))],
                "score": float(rng.random()),
            }
        )
    return results


def voc_objects(root, split):
    """Ground truth parsed here with ElementTree, independently of attnyolo's reader: VOC's
    inclusive 1-based pixels as stored."""
    ids = (root / "ImageSets/Main" / f"{split}.txt").read_text().split()
    objects = []
    for image_id in ids:
        for obj in ET.parse(root / "Annotations" / f"{image_id}.xml").iter("object"):
            box = [float(obj.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")]
            objects.append((image_id, VOC_NAMES.index(obj.find("name").text), *box))
    return ids, objects


def test_voc_figures_equal_an_independent_reference(shared_data, tmp_path):
    """mean_average_precision (bes-dev) works in VOC's inclusive pixels (+1 on sizes): GT as the
    XML states it, each detection shifted by +1 at its top-left, gives the same IoUs as
    attnyolo's continuous coordinates (where the reader put VOC boxes at xmin - 1, ymin - 1)."""
    reference = pytest.importorskip("mean_average_precision")
    root = shared_data / "voc20/VOC2007"
    ids, objects = voc_objects(root, "test")
    continuous = [(i, c, x1 - 1, y1 - 1, x2, y2) for i, c, x1, y1, x2, y2 in objects]
    results = fake_detections(continuous, ids, 20)
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(results))
    report = evaluate_files(
        root,
        detections=path,
        split="test",
        class_names=VOC_NAMES,
        output_dir=tmp_path / "out",
        plots=False,
    ).report

    metric = reference.MeanAveragePrecision2d(num_classes=20)
    for image_id in ids:
        gt = np.array(
            [[x1, y1, x2, y2, c, 0, 0] for i, c, x1, y1, x2, y2 in objects if i == image_id]
        ).reshape(-1, 7)
        preds = np.array(
            [
                [
                    r["bbox"][0] + 1,
                    r["bbox"][1] + 1,
                    r["bbox"][0] + r["bbox"][2],
                    r["bbox"][1] + r["bbox"][3],
                    r["category_id"] - 1,
                    r["score"],
                ]
                for r in results
                if r["image_id"] == image_id
            ]
        ).reshape(-1, 6)
        metric.add(preds, gt)
    expected = metric.value(iou_thresholds=0.5)
    present = [c for c in range(20) if any(o[1] == c for o in objects)]
    for c in present:
        assert report["classes"][c]["ap"] == pytest.approx(expected[0.5][c]["ap"], abs=1e-4)
    assert report["voc"]["map"] == pytest.approx(
        np.mean([expected[0.5][c]["ap"] for c in present]), abs=1e-4
    )
    assert report["images"] == 228


def test_coco_figures_equal_pycocotools(shared_data, tmp_path):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_path = shared_data / "coco_tiny/annotations/instances_val2017.json"
    gt = json.loads(gt_path.read_text())
    cats = sorted(c["id"] for c in gt["categories"])
    objects = [
        (
            a["image_id"],
            cats.index(a["category_id"]),
            a["bbox"][0],
            a["bbox"][1],
            a["bbox"][0] + a["bbox"][2],
            a["bbox"][1] + a["bbox"][3],
        )
        for a in gt["annotations"]
        if not a["iscrowd"]
    ]
    results = fake_detections(objects, [im["id"] for im in gt["images"]], 80, seed=3)
    for r in results:
        r["category_id"] = cats[r["category_id"] - 1]
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(results))
    report = evaluate_files(gt_path, detections=path, output_dir=tmp_path / "out").report

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_path))
        ev = COCOeval(coco, coco.loadRes(str(path)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    for name, value in zip(STAT_NAMES, ev.stats, strict=True):
        expected = None if value < 0 else value
        assert report["coco"][name] == pytest.approx(expected, abs=1e-12), name
    assert report["images"] == 80


def test_text_files_as_the_original_wrote_them(shared_data, tmp_path):
    """The original's detection-results/*.txt give the same figures as the same detections in
    a COCO results JSON."""
    root = shared_data / "voc20/VOC2007"
    ids, objects = voc_objects(root, "test")
    results = fake_detections(
        [(i, c, x1 - 1, y1 - 1, x2, y2) for i, c, x1, y1, x2, y2 in objects], ids, 20, seed=5
    )
    for r in results:  # the text format holds what it holds; compare like with like
        r["bbox"] = [round(v, 2) for v in r["bbox"]]
        r["score"] = round(r["score"], 6)
    (tmp_path / "dets.json").write_text(json.dumps(results))
    folder = tmp_path / "detection-results"
    folder.mkdir()
    for image_id in ids:
        lines = [
            f"{VOC_NAMES[r['category_id'] - 1]} {r['score']} {r['bbox'][0]} {r['bbox'][1]} "
            f"{r['bbox'][0] + r['bbox'][2]} {r['bbox'][1] + r['bbox'][3]}"
            for r in results
            if r["image_id"] == image_id
        ]
        if lines:
            (folder / f"{image_id}.txt").write_text("\n".join(lines) + "\n")
    options = dict(split="test", class_names=VOC_NAMES, plots=False)
    from_json = evaluate_files(
        root, detections=tmp_path / "dets.json", output_dir=tmp_path / "a", **options
    ).report
    from_text = evaluate_files(root, detections=folder, output_dir=tmp_path / "b", **options).report
    assert from_text["voc"]["map"] == pytest.approx(from_json["voc"]["map"], abs=1e-6)
    assert from_text["coco"]["AP"] == pytest.approx(from_json["coco"]["AP"], abs=1e-6)


@pytest.fixture
def small_voc(shared_data, tmp_path):
    """Eight voc20 test images as a VOC root of their own (links, nothing copied)."""
    source = shared_data / "voc20/VOC2007"
    root = tmp_path / "VOC2007"
    (root / "ImageSets/Main").mkdir(parents=True)
    (root / "Annotations").symlink_to(source / "Annotations")
    (root / "JPEGImages").symlink_to(source / "JPEGImages")
    ids = (source / "ImageSets/Main/test.txt").read_text().split()[:8]
    (root / "ImageSets/Main/test.txt").write_text("\n".join(ids) + "\n")
    return root


def confident_model(names):
    """Every anchor claims class 0 ("aeroplane"... whatever comes first) with high confidence."""
    model = YOLOv4Tiny(names, input_size=64)
    for name in ("head32_out", "head16_out"):
        layer = model.get_layer(name)
        kernel, bias = layer.get_weights()
        bias = bias.reshape(3, -1)
        bias[:, 4], bias[:, 5:] = 4.0, -4.0
        bias[:, 5 + 14] = 4.0  # person
        layer.set_weights([kernel * 0.01, bias.reshape(-1)])
    return model


def test_cli_with_a_model_agrees_with_the_function_training_uses(small_voc, tmp_path, capsys):
    model = confident_model(VOC_NAMES)
    path = save_detector(model, tmp_path / "m.keras")
    out = tmp_path / "report"
    main(
        [
            "evaluate",
            str(path),
            "--data",
            str(small_voc),
            "--split",
            "test",
            "-o",
            str(out),
            "--map-out",
        ]
    )
    printed = capsys.readouterr().out
    assert "VOC mAP@0.5 (all-point)" in printed and "person" in printed
    report = json.loads((out / "report.json").read_text())
    direct = evaluate_model(model, load_dataset(small_voc, "test", VOC_NAMES), progress=False)
    assert report["voc"]["map"] == direct.report["voc"]["map"]
    assert report["coco"]["AP"] == direct.report["coco"]["AP"]
    assert report["voc"]["map"] > 0  # "person" boxes all over the image find some people
    assert report["settings"]["confidence"] == 0.001 and report["settings"]["nms_iou"] == 0.5
    for name in (
        "report.md",
        "detections_coco.json",
        "plots/ap.png",
        "plots/gt_counts.png",
        "plots/pr_014_person.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert len(list((out / "map_out/detection-results").glob("*.txt"))) == 8
    person = report["classes"][14]
    assert person["num_gt"] > 0 and person["num_detections"] > 0
    assert report["classes"][0]["ap"] is None or report["classes"][0]["num_gt"] > 0


def test_unreadable_image_is_reported_and_skipped(small_voc, tmp_path):
    """An image that breaks after the data set was read (the reader drops broken ones itself)."""
    dataset = load_dataset(small_voc, "test", VOC_NAMES)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    dataset.records[0].image = broken
    with pytest.warns(UserWarning, match="broken.jpg"):
        evaluation = evaluate_model(confident_model(VOC_NAMES), dataset, progress=False)
    assert evaluation.report["images"] == 7
    assert evaluation.report["skipped_images"] == [str(broken)]
    assert evaluation.detections[0] is None and evaluation.detections[1] is not None


@pytest.mark.parametrize(
    "content, message",
    [
        (
            '[{"image_id": "nope", "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}]',
            r"entry 0: image_id 'nope' is not in the data",
        ),
        (
            '[{"image_id": "ID", "category_id": 99, "bbox": [0, 0, 5, 5], "score": 0.5}]',
            r"entry 0: category_id 99 is not one of",
        ),
        (
            '[{"image_id": "ID", "category_id": 1, "bbox": [0, 0, -5, 5], "score": 0.5}]',
            r"entry 0: box .* has x2 < x1",
        ),
        (
            '[{"image_id": "ID", "category_id": 1, "bbox": [0, 0, 5, 5], "score": NaN}]',
            r"entry 0: non-finite value",
        ),
        (
            '[{"image_id": "ID", "category_id": 1, "bbox": [0, 0, 5], "score": 0.5}]',
            r"entry 0: expected image_id, category_id, bbox",
        ),
        ('[{"image_id": "ID",\n "category_id": 1,,}]', r"dets.json:2:\d+: malformed JSON"),
        ('{"image_id": "ID"}', r"a JSON list of detections"),
    ],
)
def test_bad_coco_results(small_voc, tmp_path, content, message):
    dataset = load_dataset(small_voc, "test", VOC_NAMES)
    path = tmp_path / "dets.json"
    path.write_text(content.replace("ID", str(dataset.records[0].image_id)))
    with pytest.raises(DetectionFileError, match=message):
        read_detections(path, dataset)


@pytest.mark.parametrize(
    "line, message",
    [
        ("person 0.9 10 10 5 20", r":2: box .* has x2 < x1"),
        ("person nan 10 10 20 20", r":2: non-finite value"),
        ("unicorn 0.9 10 10 20 20", r":2: unknown class 'unicorn'"),
        ("person 0.9 10 10 20", r":2: expected 'class score x1 y1 x2 y2'"),
        ("person 0.9 10 ten 20 20", r":2: expected 'class score x1 y1 x2 y2'"),
    ],
)
def test_bad_text_detections(small_voc, tmp_path, line, message):
    dataset = load_dataset(small_voc, "test", VOC_NAMES)
    (tmp_path / f"{dataset.records[0].image_id}.txt").write_text(f"person 0.5 1 2 3 4\n{line}\n")
    with pytest.raises(DetectionFileError, match=message):
        read_detections(tmp_path, dataset)
    (tmp_path / f"{dataset.records[0].image_id}.txt").unlink()
    (tmp_path / "stranger.txt").write_text("person 0.5 1 2 3 4\n")
    with pytest.raises(DetectionFileError, match="stranger.txt: no image 'stranger'"):
        read_detections(tmp_path, dataset)


def test_cli_bad_detections_is_one_clear_line(small_voc, tmp_path, capsys):
    (tmp_path / "d.json").write_text("[1, 2")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "evaluate",
                "--data",
                str(small_voc),
                "--split",
                "test",
                "--classes",
                str(_names(tmp_path)),
                "--detections",
                str(tmp_path / "d.json"),
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "d.json:1:" in err and "malformed JSON" in err and "Traceback" not in err


def _names(tmp_path):
    path = tmp_path / "voc.names"
    path.write_text("\n".join(VOC_NAMES) + "\n")
    return path


def test_no_detections_at_all(small_voc, tmp_path):
    (tmp_path / "d.json").write_text("[]")
    report = evaluate_files(
        small_voc,
        detections=tmp_path / "d.json",
        split="test",
        class_names=VOC_NAMES,
        output_dir=tmp_path / "o",
    ).report
    assert report["voc"]["map"] == 0.0 and report["coco"]["AP"] == 0.0
    with_gt = [c for c in report["classes"] if c["num_gt"]]
    assert with_gt and all(c["ap"] == 0.0 for c in with_gt)
    assert all(c["ap"] is None for c in report["classes"] if not c["num_gt"])
    assert not math.isnan(report["voc"]["mean_lamr"])


def test_coco_json_without_its_images_evaluates_given_detections(tmp_path):
    """As pycocotools does: the instances JSON holds all the metric needs. A model still needs
    the images, so reading for one refuses."""
    instances = {
        "images": [
            {"id": 7, "file_name": "seven.jpg", "width": 100, "height": 80},
            {"id": 9, "file_name": "nine.jpg", "width": 60, "height": 60},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "bbox": [10, 10, 30, 20], "iscrowd": 0},
            {"id": 2, "image_id": 9, "category_id": 5, "bbox": [0, 0, 20, 20], "iscrowd": 0},
        ],
        "categories": [{"id": 3, "name": "cat"}, {"id": 5, "name": "dog"}],
    }
    (tmp_path / "instances.json").write_text(json.dumps(instances))
    results = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 0.9,
        }
        for a in instances["annotations"]
    ]
    (tmp_path / "results.json").write_text(json.dumps(results))
    report = evaluate_files(
        tmp_path / "instances.json",
        detections=tmp_path / "results.json",
        output_dir=tmp_path / "out",
        plots=False,
    ).report
    assert report["images"] == 2 and report["skipped_images"] == []
    assert report["voc"]["map"] == 1.0 and report["coco"]["AP"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no usable image"):
        load_dataset(tmp_path / "instances.json")


def _original_correct_boxes(box_xy, box_wh, input_shape, image_shape, letterbox):
    """NumPy port of the original's `yolo_correct_boxes` (utils/utils_bbox.py): normalised
    centre/size in the input -> top, left, bottom, right in image pixels."""
    box_yx, box_hw = box_xy[..., ::-1], box_wh[..., ::-1]
    input_shape = np.asarray(input_shape, np.float64)
    image_shape = np.asarray(image_shape, np.float64)
    if letterbox:
        new_shape = np.round(image_shape * np.min(input_shape / image_shape))
        offset = (input_shape - new_shape) / 2.0 / input_shape
        scale = input_shape / new_shape
        box_yx = (box_yx - offset) * scale
        box_hw = box_hw * scale
    mins, maxes = box_yx - box_hw / 2.0, box_yx + box_hw / 2.0
    boxes = np.concatenate([mins[..., 0:1], mins[..., 1:2], maxes[..., 0:1], maxes[..., 1:2]], -1)
    return boxes * np.concatenate([image_shape, image_shape])


@pytest.mark.parametrize("letterbox", [False, True])
def test_original_output_is_what_get_map_txt_writes(shared_data, letterbox):
    # An untrained model's boxes reach past the image edges: the original neither clips them
    # nor keeps their fractions, and cuts each score to 6 characters of its float32 text.
    from attnyolo.data import load_image
    from attnyolo.engine.predict import Predictor
    from attnyolo.inference.decoder import YoloDecoder
    from attnyolo.inference.preprocess import original_letterbox_transform

    model = confident_model(VOC_NAMES)
    image = load_image(shared_data / "voc20/VOC2007/JPEGImages" / "000000000139.jpg")
    settings = dict(confidence=0.3, nms_iou=0.5, letterbox=letterbox, resize_filter="pillow")
    found = Predictor(model, original_output=True, **settings)([image])[0]
    plain = Predictor(model, **settings)([image])[0]
    assert len(found) == len(plain) > 0
    assert np.all(found.boxes == np.trunc(found.boxes))
    ih, iw = image.shape[:2]
    assert (found.boxes[:, :2] < 0).any() or (found.boxes[:, 2:] > [iw, ih]).any()
    expected = [float(str(np.float32(s))[:6]) for s in plain.scores]
    np.testing.assert_array_equal(found.scores, expected)
    # The boxes: the unclipped decode, mapped back as the original's yolo_correct_boxes does.
    predictor = Predictor(model, **settings)
    batch, transform = predictor.preprocessor(image)
    if letterbox:
        transform = original_letterbox_transform((ih, iw), model.input_size)
    decoder = YoloDecoder.from_model(model, confidence=0.3, nms_iou=0.5, clip=False)
    unclipped = decoder(predictor.runtime(batch[None]), [(ih, iw)], transform[None])[0]
    np.testing.assert_array_equal(found.boxes, np.trunc(unclipped.boxes))


@pytest.mark.parametrize("image_size", [(480, 640), (427, 640), (640, 361), (333, 500)])
@pytest.mark.parametrize("letterbox", [False, True])
def test_original_box_mapping_equals_yolo_correct_boxes(image_size, letterbox):
    from attnyolo.data.images import letterbox as letterbox_image
    from attnyolo.data.images import resize

    input_size = (416, 416)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 416, (50, 2))
    wh = rng.uniform(1, 300, (50, 2))
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1)  # x1y1x2y2 in input pixels
    expected = _original_correct_boxes(xy / 416, wh / 416, input_size, image_size, letterbox)
    if letterbox:
        from attnyolo.inference.preprocess import original_letterbox_transform

        transform = original_letterbox_transform(image_size, input_size)
    else:
        transform = resize(np.zeros((*image_size, 3), np.uint8), input_size)[1]
    sx, sy, px, py = transform
    mapped = (boxes - [px, py, px, py]) / [sx, sy, sx, sy]
    np.testing.assert_allclose(mapped[:, [1, 0, 3, 2]], expected, rtol=0, atol=1e-9)
    if letterbox:
        # attnyolo's own inverse is the image's exact one; the original's takes the resized
        # size rounded instead of truncated and the offset unfloored: in input pixels, the
        # original's mapping is off by up to about a pixel (two pixels in a 640 px photo).
        ours = letterbox_image(np.zeros((*image_size, 3), np.uint8), input_size)[1]
        back = mapped * ours[[0, 1, 0, 1]] + ours[[2, 3, 2, 3]]
        assert 0 < np.abs(back - boxes).max() < 2.0


def test_protocol_original_with_a_model_is_the_whole_original_pipeline(small_voc, tmp_path):
    # attnyolo evaluate --protocol original with a model: the original's detection settings,
    # the boxes as written, ground truth as the XML writes it; written out as a map_out folder,
    # a port of get_map gives the same figures.
    from attnyolo.data.map_out import read_map_out
    from tests.metrics.get_map_port import get_map_port

    model = confident_model(VOC_NAMES)
    path = save_detector(model, tmp_path / "m.keras")
    out = tmp_path / "report"
    main(["evaluate", str(path), "--data", str(small_voc), "--protocol", "original"]
         + ["-o", str(out), "--map-out", "--no-coco"])  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    settings = report["settings"]
    assert settings["protocol"] == "original" and settings["resize_filter"] == "pillow"
    assert (settings["confidence"], settings["letterbox"], settings["original_output"]) == (
        0.001,
        False,
        True,
    )
    expected = get_map_port(out / "map_out", min_overlap=0.5, score_threshold=0.5)
    assert report["voc"]["map"] == pytest.approx(expected["map"], abs=1e-12)
    assert sum(c["num_detections"] for c in report["classes"]) > 0
    assert len(expected["classes"]) == sum(c["num_gt"] > 0 for c in report["classes"])
    # The ground truth is the XML's 1-based values: a raw xmin of 1 stays 1 (records hold 0).
    written = read_map_out(out / "map_out")
    first = written.records[0]
    xml = ET.parse(small_voc / "Annotations" / f"{first.image_id}.xml").find("object/bndbox")
    raw = [float(xml.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
    assert any(np.allclose(b, raw) for b in first.boxes)


def test_eval_callback_protocol_and_training_setting(small_voc, tmp_path):
    from attnyolo.engine.train import resolve_config

    model = confident_model(VOC_NAMES)
    dataset = load_dataset(small_voc, "test", VOC_NAMES)
    evaluation = evaluate_model(
        model, dataset, protocol="eval_callback", progress=False, coco=False
    )
    settings = evaluation.report["settings"]
    assert (settings["confidence"], settings["letterbox"], settings["max_detections"]) == (
        0.05,
        True,
        100,
    )
    assert settings["protocol"] == "eval_callback"
    assert all(d is None or len(d) <= 100 for d in evaluation.detections)
    assert resolve_config(data="x", val_protocol="eval_callback")["val_protocol"] == "eval_callback"
    with pytest.raises(ValueError, match="val_protocol must be one of voc, original"):
        resolve_config(data="x", val_protocol="coco")


def test_ground_truth_as_written_keeps_what_the_reader_repairs(shared_data):
    # mask_voc holds a box starting at xmin 0 (outside VOC's 1-based image): attnyolo's reader
    # clips it to the image; get_map.py compares the XML's values, 0 included.
    from attnyolo.data.voc import read_voc
    from attnyolo.engine.evaluate import original_ground_truth

    root = shared_data / "mask_voc/VOC2007"
    dataset = read_voc(root, "trainval")
    written = original_ground_truth(dataset)
    assert [r.image_id for r in written.records] == [r.image_id for r in dataset.records]
    record = next(r for r in written.records if r.image_id == "000090")
    assert record.boxes.dtype == np.float64 and record.boxes[:, 0].min() == 0.0
    shifted = next(r for r in dataset.records if r.image_id == "000090")
    assert shifted.boxes[:, 0].min() == 0.0  # clipped from -1
    np.testing.assert_allclose(written.records[5].boxes[:, 2:], dataset.records[5].boxes[:, 2:])
    np.testing.assert_allclose(
        written.records[5].boxes[:, :2], dataset.records[5].boxes[:, :2] + 1, atol=1e-4
    )
