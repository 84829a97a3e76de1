"""Fuzzing the parsers: every reader of a file or an option either returns records that keep
their invariants or raises the project's own clear error (a `ValueError` or `OSError`, or a
subclass such as `DarknetError`, whose message names the file or the offending text and says what
is wrong), and never hangs.

Inputs are drawn two ways: fully random text and bytes, and structure-aware files (valid-looking
XML, JSON, txt, cfg and YAML with mutated fields: negative, huge, NaN and infinite numbers,
missing tags, wrong types, unicode, BOMs and other encodings, truncation, duplicated ids, unknown
classes, path traversal). Each example writes its files into a fresh temporary folder.

Every call runs under a CPU-time limit (`time_limit`), so a hang fails the example instead of
the run. The number of examples comes from the Hypothesis profile (see conftest.py): a bounded
number in CI (`ATTNYOLO_FUZZ_EXAMPLES`, default 60), `HYPOTHESIS_PROFILE=long` for 2,000 each.

The training YAML is fuzzed within each setting's type, and wrong types, NaN and infinite
numbers, undecodable and malformed files are tried one by one at the end of the file.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import math
import signal
import string
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock
from xml.sax.saxutils import escape

import numpy as np
import pytest
import yaml
from hypothesis import event, example, given
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from PIL import Image

from attnyolo.data._common import DatasetWarning, read_class_names
from attnyolo.data.coco import read_coco
from attnyolo.data.datasets import load_dataset
from attnyolo.data.images import ImageError, load_image
from attnyolo.data.lines import read_annotation_lines
from attnyolo.data.map_out import parse_detection_line, parse_ground_truth_line, read_map_out
from attnyolo.data.records import Dataset, Record
from attnyolo.data.voc import read_voc
from attnyolo.data.yolo import read_yolo

# A parser call gets this much CPU time before it counts as a hang; the slowest legitimate call
# here takes well under a second. The wall-clock limit is only a backstop for a call that blocks:
# the shared machine may pause this process for minutes, which CPU time does not count.
CPU_LIMIT_S = 5.0
WALL_LIMIT_S = 300.0

# The faults `DatasetWarning` documents.
FAULTS = {
    "missing image",
    "unreadable image",
    "bad annotation",
    "unknown class",
    "box clipped",
    "box dropped",
    "size mismatch",
    "no boxes",
    "duplicate",
    "class names",
    "summary",
}

# Exceptions that are ValueError or OSError by inheritance but tell the user nothing about which
# file or setting is at fault: they leak from the standard library.
_RAW = (UnicodeError, json.JSONDecodeError, KeyError, IndexError)


class Hang(BaseException):
    """Raised by `time_limit`; a BaseException so that no `except Exception` in a parser can
    swallow it."""


@contextlib.contextmanager
def time_limit(cpu_s: float = CPU_LIMIT_S, wall_s: float = WALL_LIMIT_S) -> Iterator[None]:
    """Interrupts the block after `cpu_s` of CPU time or `wall_s` of wall time (Linux timers)."""

    def stop(signum, frame):
        raise Hang(f"still running after {cpu_s:g} s of CPU time or {wall_s:g} s of wall time")

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGPROF, signal.SIGALRM)}
    signal.setitimer(signal.ITIMER_PROF, cpu_s)
    signal.setitimer(signal.ITIMER_REAL, wall_s)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _forms(names: Sequence[object]) -> list[str]:
    """The texts a message may quote a name by: as it is, and as `repr` writes it."""
    forms = []
    for name in names:
        text = str(name)
        forms += [text, repr(text), repr(text)[1:-1]]
    return [form for form in forms if form.strip()]


def assert_clear_error(error: BaseException, names: Sequence[object]) -> None:
    """Fails unless `error` is a ValueError or OSError (the project's errors are subclasses)
    that is not a raw standard-library error, whose message names one of `names` (the file, the
    folder the files are in, or the offending text) and says more than that name."""
    message = str(error)
    # A setting may be named as prose: `input_size` as "Input size".
    prose = message.lower()
    named = [form for form in _forms(names) if form in message]
    named += [form for form in _forms(names) if form.replace("_", " ").lower() in prose]
    rest = message.replace(max(named, key=len), "", 1) if named else message
    clear = (
        isinstance(error, ValueError | OSError)
        and not isinstance(error, _RAW)
        and named
        and sum(ch.isalpha() for ch in rest) >= 5
    )
    if not clear:
        raise AssertionError(
            f"not a clear error: {type(error).__name__}: {message!r}; expected a ValueError or "
            f"OSError naming one of {list(names)[:6]} and the problem"
        ) from error


def check_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Every warning a reader gives is a `DatasetWarning` naming its file and a known fault."""
    for w in caught:
        assert issubclass(w.category, DatasetWarning), f"stray warning {w.category.__name__}: {w}"
        assert w.message.fault in FAULTS, f"unknown fault {w.message.fault!r}: {w.message}"
        assert w.message.file, f"a warning without its file: {w.message}"


def run_parser(parse: Callable, *args: Any, names: Sequence[object], **kwargs: Any) -> Any:
    """`parse(*args, **kwargs)` under the time limit, with its warnings checked. Returns what it
    returned, or None after checking that what it raised is a clear error naming one of
    `names`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with time_limit():
                result = parse(*args, **kwargs)
        except Hang as e:
            raise AssertionError(f"{parse.__name__} hung: {e}") from None
        except Exception as e:
            assert_clear_error(e, names)
            _event(f"{parse.__name__}: {type(e).__name__}")
            return None
    check_warnings(caught)
    _event(f"{parse.__name__}: returned")
    return result


def _event(text: str) -> None:
    """Counts `text` in Hypothesis' statistics, in a @given test (elsewhere it cannot)."""
    if currently_in_test_context():
        event(text)


def check_dataset(
    dataset: Dataset,
    *,
    float_type: type = np.float32,
    clipped: bool = True,
    sizes: dict[str, tuple[int, int]] | None = None,
    images_in: Path | None = None,
) -> None:
    """The invariants of a data set a reader returned.

    Args:
        float_type: the boxes' dtype (float64 for `TextRecord`s).
        clipped: boxes lie inside their image when its size is known.
        sizes: image file name -> `(height, width)` as written; a record's size must be it.
        images_in: every record's image must be an existing file inside this folder.
    """
    assert isinstance(dataset, Dataset) and dataset.records, "a data set without records"
    names = dataset.class_names
    assert all(isinstance(n, str) for n in names), names
    assert len(set(names)) == len(names), f"repeated class names {names}"
    ids = [record.image_id for record in dataset.records]
    assert len(set(ids)) == len(ids), f"image ids not unique: {ids}"
    for record in dataset.records:
        assert isinstance(record, Record)
        boxes, classes, difficult = record.boxes, record.classes, record.difficult
        where = f"{record.image}: boxes {boxes.tolist()} classes {classes.tolist()}"
        assert boxes.dtype == float_type and boxes.ndim == 2 and boxes.shape[1] == 4, where
        assert classes.dtype == np.int64 and difficult.dtype == bool, where
        assert len(boxes) == len(classes) == len(difficult), where
        assert np.isfinite(boxes).all(), where
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all(), where
        assert ((classes >= 0) & (classes < len(names))).all(), where
        if record.size is not None:
            height, width = record.size
            assert isinstance(height, int) and isinstance(width, int), record.size
            assert height > 0 and width > 0, record.size
            if clipped:
                assert (boxes >= 0).all(), where
                # In float64: a size from a JSON may be beyond float32's range.
                assert (boxes[:, [0, 2]].astype(np.float64) <= width).all(), where
                assert (boxes[:, [1, 3]].astype(np.float64) <= height).all(), where
        if sizes is not None:
            assert record.size == sizes[record.image.name], (record.image, record.size)
        if images_in is not None:
            assert record.image.is_file(), record.image
            assert record.image.resolve().is_relative_to(images_in.resolve()), record.image


@contextlib.contextmanager
def folder() -> Iterator[Path]:
    """A fresh temporary folder per example (function-scoped fixtures are shared by all the
    examples of a @given test)."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as name:
        yield Path(name)


def test_time_limit_interrupts_a_loop():
    with pytest.raises(Hang), time_limit(cpu_s=0.2):
        while True:
            pass


def test_clear_error_check():
    """The helper tells clear errors from raw ones, so the properties below can fail."""
    assert_clear_error(ValueError("/data/a.xml: not valid XML"), ["/data/a.xml"])
    assert_clear_error(FileNotFoundError("class-names file not found: n.txt"), ["n.txt"])
    for raw in (
        KeyError("id"),
        TypeError("unhashable type: 'list'"),
        ValueError("embedded null byte"),  # names no file
        ValueError("/data/a.xml"),  # names the file but not the problem
        json.JSONDecodeError("Expecting value", "/data/a.json", 0),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "/data/a"),
    ):
        with pytest.raises(AssertionError, match="not a clear error"):
            assert_clear_error(raw, ["/data/a.xml", "/data/a.json", "/data/a"])


# Input pieces.


def _image_bytes(kind: str, width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(buffer, kind)
    return buffer.getvalue()


# kind -> (suffix, bytes, (height, width) or None for a file that is no image).
IMAGES = {
    "png": (".png", _image_bytes("PNG", 64, 48), (48, 64)),
    "jpg": (".jpg", _image_bytes("JPEG", 40, 32), (32, 40)),
    "broken": (".jpg", b"\xff\xd8\xff\xe0 not really a jpeg", None),
    "empty": (".png", b"", None),
    "text": (".png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 7, None),
}


def mostly(good: st.SearchStrategy, bad: st.SearchStrategy, odds: int = 5) -> st.SearchStrategy:
    """`good`, and `bad` one time in `odds`: files that are mostly right reach the code behind
    the first check."""
    return st.integers(0, odds - 1).flatmap(lambda i: bad if i == 0 else good)


image_kinds = mostly(st.sampled_from(["png", "jpg"]), st.sampled_from(["broken", "empty", "text"]))

# Numbers as a file may write them, and everything that is not quite a number.
number_text = st.one_of(
    st.integers(-2000, 2000).map(str),
    st.floats(-1e4, 1e4).map(lambda v: f"{v:.3f}"),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),  # 'nan', 'inf', '1e+308'
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(
        [
            "",
            " ",
            "nan",
            "-NaN",
            "Infinity",
            "-inf",
            "1e400",
            "-1e400",
            "1e-400",
            "0x10",
            "1_000",
            "\u0661\u0662",  # Arabic-Indic digits, which float() reads
            "12abc",
            "--1",
            "1,5",
            "\u00a012",
            "١e9",
            "None",
            "true",
        ]
    ),
)
# Short text: printable unicode, markup characters, traversal.
word = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8),
    st.sampled_from(["cat", "dog", "hot dog", " cat ", "CAT", "../../etc/passwd", "<&>", "\ufeff"]),
)
# A coordinate: mostly a plausible one, now and then anything.
coordinate = mostly(st.integers(-5, 80).map(str), number_text, 3)
class_lists = mostly(
    st.lists(
        st.sampled_from(["cat", "dog", "hot dog", "bird"]), min_size=1, max_size=4, unique=True
    ),
    mostly(
        st.lists(st.sampled_from(["cat", "dog", "cat ", "", "\ufeffcat"]), min_size=1, max_size=4),
        st.just([]),
    ),
)
encodings = mostly(st.just("utf-8"), st.sampled_from(["utf-8-sig", "utf-16", "latin-1"]))


def encode(text: str, encoding: str) -> bytes:
    return text.encode(encoding, errors="replace")


@st.composite
def mutated_bytes(draw, text: str) -> bytes:
    """`text` in one of several encodings, sometimes truncated or with a byte flipped."""
    data = encode(text, draw(encodings))
    mutation = draw(mostly(st.just("none"), st.sampled_from(["truncate", "flip", "bom"])))
    if mutation == "truncate" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif mutation == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    elif mutation == "bom":
        data = b"\xef\xbb\xbf" + data
    return data


def random_file_bytes() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode))


def content(structured: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """A structure-aware file, or one time in six random bytes."""
    return mostly(structured, random_file_bytes(), 6)


# PASCAL VOC.

STEMS = ["a", "b", "c", "d"]


@st.composite
def voc_object(draw, names: list[str]) -> str:
    def tag(name: str, value: str) -> str:
        return f"<{name}>{escape(value) if draw(st.integers(0, 9)) else value}</{name}>"

    parts = []
    if draw(st.integers(0, 9)):
        parts.append(tag("name", draw(mostly(st.sampled_from(names or ["cat"]), word))))
    if draw(st.booleans()):
        parts.append(tag("difficult", draw(st.sampled_from(["0", "1", "true", "2", "", "x"]))))
    if draw(st.integers(0, 9)):
        corners = [
            tag(key, draw(coordinate))
            for key in ("xmin", "ymin", "xmax", "ymax")
            if draw(st.integers(0, 9))
        ]
        parts.append("<bndbox>" + "".join(corners) + "</bndbox>")
    return "<object>" + "".join(parts) + "</object>"


@st.composite
def voc_xml(draw, names: list[str]) -> bytes:
    parts = []
    if draw(st.booleans()):
        width, height = draw(mostly(st.just(("64", "48")), st.tuples(number_text, number_text)))
        parts.append(f"<size><width>{width}</width><height>{height}</height></size>")
    parts += draw(st.lists(voc_object(names), max_size=4))
    declaration = draw(
        st.sampled_from(["", '<?xml version="1.0"?>', '<?xml version="1.0" encoding="utf-8"?>'])
    )
    return draw(mutated_bytes(declaration + "<annotation>" + "".join(parts) + "</annotation>"))


@st.composite
def voc_folders(draw) -> dict:
    names = draw(class_lists)
    samples = {}
    for stem in draw(st.lists(st.sampled_from(STEMS), min_size=2, max_size=4, unique=True)):
        xml = draw(mostly(content(voc_xml(names)), st.none(), 8))
        samples[stem] = (xml, draw(mostly(image_kinds, st.none(), 8)))
    other = st.one_of(st.sampled_from(["zz", "../../etc/passwd", "a b"]), word)
    listed = draw(st.lists(mostly(st.sampled_from(list(samples)), other), min_size=1))
    split = draw(content(mutated_bytes("\n".join(listed) + "\n")))
    given_names = draw(mostly(st.sampled_from([None, names]), class_lists))
    return {
        "samples": samples,
        "split": split,
        "names": given_names,
        "as_written": draw(st.booleans()),
    }


def write_voc(root: Path, spec: dict) -> dict[str, tuple[int, int]]:
    """Writes a VOC root; returns image file name -> (height, width)."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    sizes = {}
    for stem, (xml, kind) in spec["samples"].items():
        if xml is not None:
            (root / "Annotations" / f"{stem}.xml").write_bytes(xml)
        if kind is not None:
            suffix, data, size = IMAGES[kind]
            (root / "JPEGImages" / f"{stem}{suffix}").write_bytes(data)
            sizes[f"{stem}{suffix}"] = size
    (root / "ImageSets" / "Main" / "train.txt").write_bytes(spec["split"])
    return sizes


def _voc_case(split: bytes, xml: bytes = b"<annotation/>") -> dict:
    return {"samples": {"a": (xml, "png")}, "split": split, "names": None, "as_written": False}


INFINITE_SIZE = (
    b"<annotation><size><width>inf</width><height>1e400</height></size><object><name>cat</name>"
    b"<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>"
    b"</annotation>"
)


@given(voc_folders())
@example(_voc_case(b"a\x00\n"))  # an id with a NUL: was a bare "embedded null byte"
@example(_voc_case(b"\xff\xfea\n"))  # a split file in UTF-16: was UnicodeDecodeError
@example(_voc_case(b"a\n", INFINITE_SIZE))  # <width>inf</width>: was OverflowError
@example(_voc_case(b"a\n", b'<?xml version="1.0" encoding="ttf-8"?><annotation/>'))  # LookupError
@example(
    _voc_case(b"a\n", INFINITE_SIZE.replace(b">9</ymax", b">3.5e38</ymax")) | {"as_written": True}
)
def test_voc(spec):
    with folder() as root:
        sizes = write_voc(root, spec)
        dataset = run_parser(
            read_voc,
            root,
            "train",
            spec["names"],
            as_written=spec["as_written"],
            names=[root, "class names", *(spec["names"] or [])],
        )
        if dataset is not None:
            written = spec["as_written"]
            check_dataset(
                dataset,
                float_type=np.float64 if written else np.float32,
                clipped=not written,
                sizes=sizes,
                images_in=root / "JPEGImages",
            )


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<annotation><object><name>&lol9;</name>
<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>
"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE annotation [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<annotation><object><name>&secret;</name>
<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>
"""


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["laughs", "external"])
def test_voc_refuses_entities(xml):
    """Entity declarations are refused (defusedxml), not expanded: the annotation is reported
    as bad and skipped, and the good one beside it is read."""
    good = "<annotation><object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
    good += "<xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>"
    spec = {
        "samples": {"a": (xml.encode(), "png"), "b": (good.encode(), "png")},
        "split": b"a\nb\n",
    }
    with folder() as root:
        write_voc(root, spec)
        with warnings.catch_warnings(record=True) as caught, time_limit(cpu_s=2.0):
            warnings.simplefilter("always")
            dataset = read_voc(root, "train")
        assert [r.image_id for r in dataset.records] == ["b"]
        assert dataset.class_names == ["cat"]
        bad = [w.message for w in caught if getattr(w.message, "fault", "") == "bad annotation"]
        assert len(bad) == 1 and bad[0].file.endswith("a.xml"), [str(w.message) for w in caught]
        assert "unreadable XML" in str(bad[0])


# COCO.


def _json_containers(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6),
    _json_containers,
    max_leaves=8,
)
ids = st.one_of(
    st.integers(-2, 4), st.sampled_from(["1", None, 1.0, True, [1], {"id": 1}]), json_values
)
numbers = st.one_of(
    st.integers(-100, 100),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([10**400 // 10**390, "12", "x", None, True, [1]]),
)


@st.composite
def coco_json(draw, files: list[str]) -> bytes:
    def maybe(entry: dict) -> object:
        """The entry, an entry missing a key, or something that is no entry at all."""
        choice = draw(st.integers(0, 19))
        if choice == 0:
            return draw(json_values)
        if choice == 1 and entry:
            entry.pop(draw(st.sampled_from(sorted(entry))))
        return entry

    names = ["cat", "dog", "hot dog", "bird"]
    categories = [
        maybe(
            {
                "id": draw(mostly(st.just(k + 1), ids, 10)),
                "name": draw(mostly(st.just(names[k]), st.one_of(word, ids), 10)),
            }
        )
        for k in range(draw(st.integers(0, 4)))
    ]
    file_names = st.one_of(
        st.sampled_from(["missing.jpg", "../outside.png", "/etc/passwd", "sub/../a.png"]),
        word,
        json_values,
    )
    images = [
        maybe(
            {
                "id": draw(mostly(st.just(k), ids, 10)),
                "file_name": draw(mostly(st.sampled_from(files or ["a.png"]), file_names)),
                "width": draw(mostly(st.just(64), numbers)),
                "height": draw(mostly(st.just(48), numbers)),
            }
        )
        for k in range(draw(st.integers(0, 4)))
    ]
    bbox = mostly(
        st.tuples(
            st.integers(-10, 70), st.integers(-10, 50), st.integers(-5, 70), st.integers(-5, 50)
        ).map(list),
        st.one_of(st.lists(numbers, max_size=5), json_values),
    )
    annotations = [
        maybe(
            {
                "image_id": draw(mostly(st.integers(0, max(0, len(images) - 1)), ids)),
                "category_id": draw(mostly(st.integers(1, max(1, len(categories))), ids)),
                "bbox": draw(bbox),
                "iscrowd": draw(mostly(st.sampled_from([0, 0, 1]), json_values)),
            }
        )
        for _ in range(draw(st.integers(0, 6)))
    ]
    data = {"images": images, "annotations": annotations, "categories": categories}
    if not draw(st.integers(0, 19)):
        data = draw(json_values)
    return draw(mutated_bytes(json.dumps(data)))


@st.composite
def coco_folders(draw) -> dict:
    files = {
        f"{stem}{IMAGES[kind][0]}": kind
        for stem, kind in draw(
            st.dictionaries(st.sampled_from(STEMS), image_kinds, min_size=1, max_size=3)
        ).items()
    }
    return {
        "files": files,
        "json": draw(content(coco_json(list(files)))),
        "names": draw(mostly(st.none(), class_lists, 3)),
        "require_images": draw(st.booleans()),
    }


def _coco_case(data: object, require_images: bool = False) -> dict:
    files = {"a.png": "png"}
    return {
        "files": files,
        "json": json.dumps(data).encode(),
        "names": None,
        "require_images": require_images,
    }


def _coco(images=(), annotations=(), categories=({"id": 1, "name": "cat"},)) -> dict:
    return {
        "images": list(images),
        "annotations": list(annotations),
        "categories": list(categories),
    }


IMAGE_A = {"id": 1, "file_name": "a.png", "width": 64, "height": 48}


@given(coco_folders())
@example(_coco_case(_coco([IMAGE_A], categories=[{"name": "cat"}])))  # was KeyError
@example(
    _coco_case(_coco([IMAGE_A], categories=[{"id": 1, "name": "a"}, {"id": "2", "name": "b"}]))
)
@example(_coco_case(_coco([IMAGE_A, [1]])))  # an image entry that is a list: was AttributeError
@example(_coco_case(_coco([{**IMAGE_A, "id": [1]}])))  # an unhashable id: was TypeError
@example(_coco_case(_coco([{**IMAGE_A, "file_name": 5}])))  # was TypeError
@example(_coco_case(_coco([{**IMAGE_A, "height": float("inf")}])))  # was OverflowError
@example(_coco_case(_coco([{**IMAGE_A, "file_name": "../outside.png"}])))  # left the folder
@example(_coco_case(_coco([{**IMAGE_A, "file_name": "/etc/passwd"}]), True))
@example(_coco_case(_coco([IMAGE_A], [{"image_id": 1, "category_id": [1], "bbox": [1, 1, 5, 5]}])))
@example(
    _coco_case(
        _coco([IMAGE_A], [{"image_id": 1, "category_id": 1, "bbox": [10**400 // 10**90, 1, 5, 5]}])
    )
)
@example(_coco_case(_coco([IMAGE_A], categories=[{"id": 1, "name": "a"}, {"id": 1, "name": "b"}])))
@example(_coco_case(_coco([IMAGE_A], categories=[{"id": 1, "name": "a"}, {"id": 2, "name": "a"}])))
def test_coco(spec):
    with folder() as root:
        images = root / "images"
        images.mkdir()
        (root / "outside.png").write_bytes(IMAGES["png"][1])
        for name, kind in spec["files"].items():
            (images / name).write_bytes(IMAGES[kind][1])
        path = root / "annotations.json"
        path.write_bytes(spec["json"])
        dataset = run_parser(
            read_coco,
            path,
            images,
            spec["names"],
            require_images=spec["require_images"],
            names=[root, "class names", *(spec["names"] or [])],
        )
        if dataset is not None:
            check_dataset(dataset, images_in=images if spec["require_images"] else None)
            for record in dataset.records:
                # Never a record outside the image folder, whether or not images are required.
                assert record.image.resolve().is_relative_to(images.resolve()), record.image


def test_coco_deep_json():
    """A JSON nested deeper than Python's recursion limit is a clear error, not RecursionError."""
    with folder() as root:
        path = root / "deep.json"
        path.write_text("[" * 100_000 + "]" * 100_000)
        with pytest.raises(ValueError, match="deep.json"):
            read_coco(path, root, require_images=False)


# YOLO txt.


@st.composite
def yolo_label(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        cls = draw(mostly(st.integers(-1, 4).map(str), number_text))
        count = draw(mostly(st.just(5), st.sampled_from([4, 6, 7, 9])))
        value = mostly(st.floats(-0.2, 1.2).map(str), number_text, 8)
        values = [draw(value) for _ in range(count - 1)]
        lines.append(" ".join([cls, *values]))
    return draw(mutated_bytes("\n".join(lines)))


@st.composite
def yolo_yaml(draw, names: list[str]) -> bytes:
    config: dict = {}
    if draw(st.booleans()):
        config["path"] = draw(st.sampled_from([".", "..", "missing", 5, None, [1]]))
    config["train"] = draw(
        mostly(
            st.sampled_from(["images/train", "list.txt", ["images/train", "list.txt"]]),
            st.one_of(st.just("missing"), json_values),
        )
    )
    config["names"] = draw(
        mostly(
            st.sampled_from([names, dict(enumerate(names)), "classes.txt"]),
            st.one_of(
                st.sampled_from(["missing.txt", 3, {1: "cat"}, {0: "cat", "x": "dog"}]),
                json_values,
            ),
        )
    )
    if not draw(st.integers(0, 19)):
        config = draw(json_values)
    return draw(mutated_bytes(yaml.safe_dump(config, allow_unicode=draw(st.booleans()))))


@st.composite
def yolo_folders(draw) -> dict:
    names = draw(class_lists)
    samples = {
        stem: (
            draw(image_kinds),
            draw(mostly(content(yolo_label()), st.none())),
        )
        for stem in draw(st.lists(st.sampled_from(STEMS), min_size=1, max_size=3, unique=True))
    }
    listed = draw(
        st.lists(
            mostly(
                st.sampled_from(["images/train/a.png", "images/train/b.jpg"]),
                st.sampled_from(["../x.png", "missing.jpg", "images/train", "/"]),
            )
        )
    )
    return {
        "samples": samples,
        "names": draw(mutated_bytes("\n".join(names))),
        "yaml": draw(st.one_of(st.none(), content(yolo_yaml(names)))),
        "list": draw(mutated_bytes("\n".join(listed))),
        "class_names": draw(mostly(st.none(), class_lists, 3)),
    }


def _yolo_case(data_yaml: bytes | None, label: bytes = b"0 0.5 0.5 0.2 0.2\n") -> dict:
    return {
        "samples": {"a": ("png", label)},
        "names": b"cat\n",
        "yaml": data_yaml,
        "list": b"",
        "class_names": None,
    }


@given(yolo_folders())
@example(_yolo_case(b"train: images/train\nnames: {0: cat, x: dog}\n"))  # was TypeError
@example(_yolo_case(b"train: list.txt\nnames: [cat]\n") | {"list": b"\xff\xfe"})  # not UTF-8
@example(_yolo_case(None) | {"names": b"\x80cat\n"})  # classes.txt not UTF-8
@example(_yolo_case(b"\xff\xfe"))  # data.yaml not UTF-8
@example(_yolo_case(None, b"\xef\xbb\xbf0 0.5 0.5 0.2 0.2\n"))  # a label with a BOM
@example(_yolo_case(None, b"0 0 3.7e306 0 0\n"))  # was a stray overflow RuntimeWarning
# An image listed twice: was two records with the same id.
@example(_yolo_case(b"train: list.txt\nnames: [cat]\n") | {"list": b"images/train/a.png\n" * 2})
def test_yolo(spec):
    with folder() as root:
        (root / "images" / "train").mkdir(parents=True)
        (root / "labels" / "train").mkdir(parents=True)
        sizes = {}
        for stem, (kind, label) in spec["samples"].items():
            suffix, data, size = IMAGES[kind]
            (root / "images" / "train" / f"{stem}{suffix}").write_bytes(data)
            sizes[f"{stem}{suffix}"] = size
            if label is not None:
                (root / "labels" / "train" / f"{stem}.txt").write_bytes(label)
        (root / "classes.txt").write_bytes(spec["names"])
        (root / "list.txt").write_bytes(spec["list"])
        if spec["yaml"] is not None:
            (root / "data.yaml").write_bytes(spec["yaml"])
        dataset = run_parser(
            read_yolo,
            root,
            "train",
            spec["class_names"],
            names=[root, "class names", *(spec["class_names"] or [])],
        )
        if dataset is not None:
            check_dataset(dataset, sizes=sizes, images_in=root / "images")


# Annotation lines.


@st.composite
def box_field(draw) -> str:
    values = [draw(coordinate) for _ in range(4)]
    values.append(draw(mostly(st.integers(-1, 2).map(str), number_text)))
    if not draw(st.integers(0, 9)):
        values = values[: draw(st.integers(0, 4))]
    return ",".join(values)


@st.composite
def lines_file(draw, image: str) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        path = draw(
            mostly(
                st.sampled_from([image, "a.png"]),
                st.one_of(
                    st.sampled_from(["images/a.png", "../a.png", "missing.jpg", "~", "/"]), word
                ),
            )
        )
        lines.append(" ".join([path, *draw(st.lists(box_field(), max_size=3))]))
    return draw(mutated_bytes("\n".join(lines)))


@st.composite
def lines_specs(draw) -> dict:
    return {
        "text": draw(content(lines_file("/IMAGE/a.png"))),
        "names": draw(mostly(class_lists, st.sampled_from(["names.txt", "none.txt"]))),
    }


@given(lines_specs())
@example({"text": b"\xff /IMAGE/a.png 1,1,5,5,0", "names": ["cat"]})  # was UnicodeDecodeError
@example({"text": b"/IMAGE/\x00/a.png 1,1,5,5,0", "names": ["cat"]})  # was "embedded null byte"
@example({"text": b"/IMAGE/a.png -1,-3.5e38,0,0,0", "names": ["cat"]})  # was y1 = -inf in float32
@example({"text": b"~", "names": ["cat"]})  # the home folder was taken for an image
def test_annotation_lines(spec):
    with folder() as root:
        (root / "a.png").write_bytes(IMAGES["png"][1])
        (root / "names.txt").write_text("cat\ndog\n")
        path = root / "train.txt"
        path.write_bytes(spec["text"].replace(b"/IMAGE", str(root).encode()))
        names = spec["names"]
        names = root / names if isinstance(names, str) else names
        given = [names] if isinstance(names, Path) else ["class names", *names]
        dataset = run_parser(read_annotation_lines, path, names, names=[root, *given])
        if dataset is not None:
            check_dataset(dataset)
            for record in dataset.records:
                assert record.image.is_file(), record.image


# The original scripts' map_out folders.

line_names = mostly(st.sampled_from(["cat", "dog", "hot dog"]), word)
# Four corners, now and then three or five; x2 >= x1 and y2 >= y1 about half the time.
line_box = mostly(
    st.lists(mostly(st.integers(0, 50).map(str), number_text, 10), min_size=4, max_size=4),
    st.lists(number_text, min_size=3, max_size=5),
)
ground_truth_line = st.builds(
    lambda name, box, flag: " ".join([name, *box, *flag]),
    line_names,
    line_box,
    mostly(st.sampled_from([[], ["difficult"]]), st.sampled_from([["1"], ["difficult", "x"]])),
)
detection_line = st.builds(
    lambda name, score, box: " ".join([name, score, *box]),
    line_names,
    mostly(st.floats(0, 1).map(str), number_text),
    line_box,
)


def check_box(box: list[float]) -> None:
    assert len(box) == 4 and all(math.isfinite(v) for v in box), box
    assert box[0] <= box[2] and box[1] <= box[3], box


@given(st.one_of(ground_truth_line, st.text(max_size=40)))
def test_ground_truth_line(line):
    parsed = run_parser(parse_ground_truth_line, line, "gt.txt:3", names=["gt.txt:3"])
    if parsed is not None:
        name, box, difficult = parsed
        assert name and name == name.strip() and isinstance(difficult, bool), parsed
        check_box(box)


@given(st.one_of(detection_line, st.text(max_size=40)))
def test_detection_line(line):
    parsed = run_parser(parse_detection_line, line, "dr.txt:3", names=["dr.txt:3"])
    if parsed is not None:
        name, score, box = parsed
        assert name and math.isfinite(score), parsed
        check_box(box)


file_stems = st.text(string.ascii_letters + string.digits + "-_. ", min_size=1, max_size=5)


@st.composite
def map_out_folders(draw) -> dict:
    def files(line) -> dict[str, bytes]:
        return draw(
            st.dictionaries(
                file_stems.filter(lambda s: s not in (".", "..")),
                content(st.lists(line, max_size=4).map("\n".join).flatmap(mutated_bytes)),
                min_size=1,
                max_size=3,
            )
        )

    return {
        "gt": files(ground_truth_line),
        "dr": draw(st.one_of(st.none(), st.just(files(detection_line)))),
        "names": draw(mostly(st.none(), class_lists, 3)),
    }


@given(map_out_folders())
@example({"gt": {"a": b"\x80"}, "dr": None, "names": None})  # was UnicodeDecodeError
@example({"gt": {"a": b"cat 1 1 5 5"}, "dr": {"a": b"\xff"}, "names": None})
def test_map_out(spec):
    with folder() as root:
        for sub, files in (("ground-truth", spec["gt"]), ("detection-results", spec["dr"])):
            if files is not None:
                (root / sub).mkdir()
                for stem, data in files.items():
                    (root / sub / f"{stem}.txt").write_bytes(data)
        dataset = run_parser(
            read_map_out,
            root,
            None,
            spec["names"],
            names=[root, "class names", *(spec["names"] or [])],
        )
        if dataset is not None:
            check_dataset(dataset, float_type=np.float64, clipped=False)


# load_dataset: any folder or file, told apart by its contents.


@st.composite
def any_location(draw) -> tuple[str, dict[str, bytes]]:
    """The files of one form (now and then one of them left out), plus a few at paths that make
    other forms' detectors fire, or almost fire."""
    forms = {
        "voc": ["Annotations/a.xml", "ImageSets/Main/train.txt", "JPEGImages/a.png"],
        "coco": ["annotations/instances_train2017.json", "train2017/a.png"],
        "yolo": ["images/train/a.png", "labels/train/a.txt", "classes.txt"],
        "yolo-flat": ["images/a.png", "labels/a.txt", "data.yaml"],
        "map_out": ["ground-truth/a.txt", "detection-results/a.txt"],
        "devkit": ["VOC2007/Annotations/a.xml", "VOC2012/Annotations/a.xml"],
    }
    paths = list(forms[draw(st.sampled_from(sorted(forms)))])
    if not draw(st.integers(0, 4)):
        paths.remove(draw(st.sampled_from(paths)))
    others = sorted({path for form in forms.values() for path in form})
    paths += draw(mostly(st.just([]), st.lists(st.sampled_from(others), max_size=3)))
    names = ["cat", "dog"]
    by_suffix = {
        ".png": image_kinds.map(lambda kind: IMAGES[kind][1]),
        ".xml": voc_xml(names),
        ".json": coco_json(["a.png"]),
        ".yaml": yolo_yaml(names),
    }
    special = {
        "ImageSets/Main/train.txt": st.just(b"a\n"),
        "classes.txt": st.just(b"cat\ndog\n"),
        "labels/train/a.txt": yolo_label(),
        "labels/a.txt": yolo_label(),
        "ground-truth/a.txt": ground_truth_line.map(str.encode),
        "detection-results/a.txt": detection_line.map(str.encode),
    }
    files = {
        path: draw(content(special[path] if path in special else by_suffix[Path(path).suffix]))
        for path in paths
    }
    spec = draw(
        mostly(
            st.just("."),
            st.sampled_from(
                ["data.yaml", "classes.txt", "x.json", "a,b", "missing", "ground-truth"]
            ),
        )
    )
    return spec, files


@given(any_location(), st.booleans())
def test_load_dataset(location, require_images):
    spec, files = location
    with folder() as root:
        for path, data in files.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(data)
        target = str(root / spec) if spec != "a,b" else f"{root}/a,{root}/b"
        dataset = run_parser(
            load_dataset, target, "train", require_images=require_images, names=[root]
        )
        if dataset is not None:
            check_dataset(dataset, float_type=dataset.records[0].boxes.dtype.type, clipped=False)


def parse_file(parse: Callable, name: str, data: bytes) -> Any:
    """`parse(path)` on `data` written as `name` in a fresh folder, through `run_parser`."""
    with folder() as root:
        path = root / name
        path.write_bytes(data)
        return run_parser(parse, path, names=[path])


@given(random_file_bytes())
def test_class_names_file(data):
    names = parse_file(read_class_names, "names.txt", data)
    if names is not None:
        assert names and all(n == n.strip() and n for n in names), names
        assert len(set(names)) == len(names), names


@given(st.one_of(random_file_bytes(), st.sampled_from(list(IMAGES)).map(lambda k: IMAGES[k][1])))
def test_load_image(data):
    image = parse_file(load_image, "image.png", data)
    if image is not None:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert min(image.shape[:2]) > 0


def test_load_image_error_kind():
    with folder() as root:
        (root / "x.jpg").write_bytes(b"no image")
        with pytest.raises(ImageError, match="x.jpg"):
            load_image(root / "x.jpg")


# Detection files (COCO results JSON and the original's text files).


def detection_dataset() -> Dataset:
    records = [
        Record(Path("images/a.jpg"), image_id="a"),
        Record(Path("images/b.png"), image_id="b"),
        Record(Path("images/c.jpg"), image_id=7),
    ]
    return Dataset(records, ["cat", "dog", "hot dog"])


def check_detections(detections, dataset: Dataset) -> None:
    assert len(detections) == len(dataset.records)
    for dets in detections:
        boxes, scores, classes = dets.boxes, dets.scores, dets.classes
        assert boxes.shape == (len(scores), 4) and classes.shape == scores.shape
        assert np.isfinite(boxes).all() and np.isfinite(scores).all()
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
        assert ((classes >= 0) & (classes < len(dataset.class_names))).all()


@st.composite
def coco_results(draw) -> bytes:
    entries = []
    for _ in range(draw(st.integers(0, 4))):
        # A strict reader: one bad field fails the file, so each is wrong one time in twelve.
        entry = {
            "image_id": draw(
                mostly(
                    st.sampled_from(["a", "b", 7, "7"]),
                    st.one_of(st.sampled_from(["zz", 7.0]), ids),
                    12,
                )
            ),
            "category_id": draw(mostly(st.integers(1, 3), st.one_of(st.integers(0, 4), ids), 12)),
            "bbox": draw(
                mostly(
                    st.tuples(
                        st.integers(-5, 50),
                        st.integers(-5, 50),
                        st.integers(0, 20),
                        st.integers(0, 20),
                    ).map(list),
                    st.one_of(st.lists(numbers, max_size=5), json_values),
                    12,
                )
            ),
            "score": draw(mostly(st.floats(0, 1), numbers, 12)),
        }
        if not draw(st.integers(0, 19)):
            entry.pop(draw(st.sampled_from(sorted(entry))))
        entries.append(entry if draw(st.integers(0, 29)) else draw(json_values))
    data = entries if draw(st.integers(0, 19)) else draw(json_values)
    return draw(mutated_bytes(json.dumps(data)))


def _result(**changes) -> bytes:
    return json.dumps(
        [{"image_id": "a", "category_id": 1, "bbox": [1, 1, 4, 4], "score": 0.5, **changes}]
    ).encode()


@given(content(coco_results()))
@example(b"\xff\xfe[]")  # was UnicodeDecodeError
@example(_result(category_id=[1]))  # was TypeError (unhashable)
@example(_result(bbox=[10**400 // 10**90, 1, 4, 4]))  # was OverflowError
@example(_result(score=10**400 // 10**90))
@example(_result(bbox="1234"))  # was read as [1, 2, 3, 4]
def test_coco_results(data):
    from attnyolo.engine.detection_files import read_detections

    dataset = detection_dataset()
    with folder() as root:
        path = root / "results.json"
        path.write_bytes(data)
        detections = run_parser(read_detections, path, dataset, names=[path])
        if detections is not None:
            check_detections(detections, dataset)


@given(
    st.dictionaries(
        st.sampled_from(["a", "b", "7", "c", "zz", ".hidden", "a.jpg"]),
        content(st.lists(detection_line, max_size=4).map("\n".join).flatmap(mutated_bytes)),
        max_size=3,
    )
)
@example({"a": b"\x80cat 0.5 1 1 4 4"})  # was UnicodeDecodeError
def test_text_detections(files):
    from attnyolo.engine.detection_files import read_detections

    dataset = detection_dataset()
    with folder() as root:
        for stem, data in files.items():
            (root / f"{stem}.txt").write_bytes(data)
        detections = run_parser(read_detections, root, dataset, names=[root])
        if detections is not None:
            check_detections(detections, dataset)


def test_coco_results_deep_json():
    from attnyolo.engine.detection_files import DetectionFileError, read_coco_results

    with folder() as root:
        path = root / "results.json"
        path.write_text("[" * 100_000 + "]" * 100_000)
        with pytest.raises(DetectionFileError, match="results.json"):
            read_coco_results(path, detection_dataset())


# Darknet cfg and weights headers.


def yolov4_tiny_cfg() -> str:
    """Darknet's yolov4-tiny.cfg as attnyolo writes it, for 416 x 416 and 80 classes."""
    from attnyolo.models.darknet import darknet_cfg_text
    from attnyolo.models.yolo import DEFAULT_ANCHOR_MASKS, DEFAULT_ANCHORS

    model = SimpleNamespace(
        input_size=(416, 416),
        anchors=DEFAULT_ANCHORS,
        anchor_masks=DEFAULT_ANCHOR_MASKS,
        num_classes=80,
        xy_scale=1.05,
    )
    return darknet_cfg_text(model)


@st.composite
def mutated_cfg(draw) -> bytes:
    """yolov4-tiny.cfg with a few lines replaced, dropped, doubled or given another value."""
    lines = yolov4_tiny_cfg().splitlines()
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(
            mostly(st.just("value"), st.sampled_from(["drop", "double", "junk", "section"]))
        )
        if kind == "value" and "=" in lines[i]:
            key = lines[i].split("=", 1)[0]
            plausible = st.one_of(
                st.integers(1, 64).map(str),
                st.lists(st.integers(-3, 8).map(str), min_size=1, max_size=6).map(",".join),
            )
            odd = st.one_of(
                number_text,
                st.lists(number_text, min_size=1, max_size=4).map(",".join),
                st.sampled_from(["-100", "99", "-1,-2", "0", "1,2,3", "10,14,  23,27"]),
            )
            lines[i] = f"{key}={draw(mostly(plausible, odd, 2))}"
        elif kind == "drop":
            del lines[i]
        elif kind == "double":
            lines.insert(i, lines[i])
        elif kind == "junk":
            lines[i] = draw(word)
        else:
            lines.insert(
                i, draw(st.sampled_from(["[route]", "[yolo]", "[weird]", "[", "[]", "[net]"]))
            )
    return draw(mutated_bytes("\n".join(lines)))


class _Built(BaseException):
    """Raised by the stand-in for YOLOv4Tiny, carrying what model_from_darknet passed it."""


def _stand_in(**options):
    raise _Built(options)


def _cfg(*changes: tuple[str, str]) -> bytes:
    text = yolov4_tiny_cfg()
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text.encode()


@given(content(mutated_cfg()))
@example(yolov4_tiny_cfg().encode())
@example(b"\xff[net]\n")  # was UnicodeDecodeError
@example(_cfg(("groups=2", "groups=0")))  # was ZeroDivisionError
@example(_cfg(("channels=3", "channels=x")))  # was a bare ValueError
@example(_cfg(("layers = -4", "layers = -40")))  # was a silent wrap to a later layer
@example(_cfg(("filters=32", "filters=-32")))  # a negative weight count
@example(_cfg(("classes=80", "classes=x")))  # was a bare ValueError
@example(_cfg(("classes=80", "")))  # was KeyError
@example(_cfg(("anchors = 10,14", "anchors = 10")))  # an odd count: was a bare ValueError
@example(_cfg(("anchors = 10,14", "anchors = nan,14")))  # was accepted
@example(_cfg(("mask = 3,4,5", "mask = 3,4,50")))
@example(_cfg(("width=416", "width=4x6")))
def test_darknet_cfg(data):
    """`read_cfg` and what `model_from_darknet` reads from the cfg before building (the model
    class is stood in for, to keep each example cheap)."""
    from attnyolo.models import darknet

    with folder() as root:
        path = root / "net.cfg"
        path.write_bytes(data)
        net = run_parser(darknet.read_cfg, path, names=[path])
        if net is not None:
            for conv in net.convs:
                assert conv.filters >= 1 and conv.size >= 1 and conv.stride >= 1, conv
                assert conv.in_channels >= 1, conv
                assert conv.weight_count > 0, conv
        with mock.patch.object(darknet, "YOLOv4Tiny", _stand_in):
            try:
                run_parser(darknet.model_from_darknet, path, names=[path])
            except _Built as built:
                options = built.args[0]
                assert isinstance(options["classes"], int) and options["classes"] >= 1, options
                height, width = options["input_size"]
                assert isinstance(height, int) and isinstance(width, int), options
                anchors = options["anchors"]
                assert anchors and all(
                    len(a) == 2 and all(math.isfinite(v) and v > 0 for v in a) for a in anchors
                ), options
                masks = options["anchor_masks"]
                assert len(masks) == 2 and all(
                    isinstance(i, int) and 0 <= i < len(anchors) for m in masks for i in m
                ), options
                assert math.isfinite(options["xy_scale"]), options
                event("model_from_darknet: built")


header_ints = st.one_of(
    st.integers(0, 3),
    st.sampled_from([-1, 999, 1000, 2**31 - 1, -(2**31)]),
)


@st.composite
def weights_files(draw) -> tuple[bytes, int, np.ndarray]:
    major, minor, revision = draw(header_ints), draw(header_ints), draw(header_ints)
    wide = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    seen = draw(st.integers(0, 2**63 - 1 if wide else 2**31 - 1))
    header = np.array([major, minor, revision], "<i4").tobytes()
    header += np.array([seen], "<i8" if wide else "<i4").tobytes()
    expected = draw(st.integers(0, 40))
    count = max(0, expected + draw(st.sampled_from([0, 0, 0, -1, 1, -expected])))
    values = np.array(draw(st.lists(st.floats(width=32), min_size=count, max_size=count)), "<f4")
    data = header + values.tobytes() + b"\x00" * draw(st.sampled_from([0, 0, 0, 1, 3]))
    if not draw(st.integers(0, 4)):
        data = data[: draw(st.integers(0, 20))]  # a header cut short
    return data, expected, values


@given(st.one_of(weights_files(), st.tuples(st.binary(max_size=64), st.integers(0, 8), st.none())))
@example((np.array([0, 2, 5, 0], "<i4").tobytes(), 0, None))  # the 20-byte header cut to 16
def test_darknet_weights(case):
    from attnyolo.models.darknet import read_weights

    data, expected, written = case
    with folder() as root:
        path = root / "net.weights"
        path.write_bytes(data)
        read = run_parser(read_weights, path, expected, names=[path])
        if read is not None:
            (major, minor, revision, seen), values = read
            assert all(isinstance(v, int) for v in (major, minor, revision, seen))
            assert values.dtype == np.float32 and values.shape == (expected,)
            if written is not None:
                np.testing.assert_array_equal(values, written)


# The --attention option, --set overrides and the training YAML.


def attention_options() -> dict[str, list[str]]:
    from attnyolo.layers.registry import attention_names, get_attention_class

    return {
        name: [
            k
            for k in inspect.signature(get_attention_class(name).__init__).parameters
            if k not in ("self", "kwargs", "name", "dtype")
        ]
        for name in attention_names()
    }


yaml_value_text = st.one_of(
    number_text,
    st.sampled_from(
        [
            "true",
            "null",
            "[1]",
            "{a: 1}",
            "&a [*a]",
            "*nowhere",
            "!!python/object/apply:os.system [echo]",
            "'unterminated",
            "[",
            "- a",
            "a: b: c",
            "\t",
            "%YAML 1.1",
            "{",
            "&a\n- *a",
        ]
    ),
    word,
)


@st.composite
def attention_specs(draw) -> object:
    catalogue = attention_options()
    name = draw(
        st.one_of(
            st.sampled_from(sorted(catalogue)), st.sampled_from(["none", "None", "", "CBAM"]), word
        )
    )
    keys = catalogue.get(name.lower(), []) + ["reduction", "", " x "]
    options = draw(st.lists(st.tuples(st.sampled_from(keys), yaml_value_text), max_size=3))
    form = draw(st.sampled_from(["text", "text", "text", "mapping", "other"]))
    if form == "text":
        items = [f"{k}={v}" if draw(st.integers(0, 9)) else k for k, v in options]
        return f"{name}:{','.join(items)}" if options or draw(st.booleans()) else name
    if form == "mapping":
        mapping = {k: v for k, v in options}
        if draw(st.integers(0, 9)):
            mapping["type"] = name
        return mapping
    return draw(json_values)


@given(st.one_of(attention_specs(), attention_specs(), st.text(max_size=30)))
@example("cbam:reduction=&a [*a]")  # a self-referencing YAML value
@example("cbam:reduction='unterminated")  # malformed YAML
@example("se:reduction=!!python/object/apply:os.system [echo]")
def test_parse_attention(spec):
    from attnyolo.engine.config import parse_attention

    if isinstance(spec, str):
        parts = spec.replace(":", ",").replace("=", ",").split(",")
        names = [spec, *parts, *(part.strip() for part in parts)]
    elif isinstance(spec, dict):
        names = [repr(spec), *map(str, spec), *map(str, spec.values())]
    else:
        names = [repr(spec)]
    parsed = run_parser(parse_attention, spec, names=names)
    if parsed is not None:
        name, options = parsed
        catalogue = attention_options()
        assert name is None or name in catalogue, parsed
        assert isinstance(options, dict), parsed
        assert set(options) <= set(catalogue.get(name, [])), parsed


BOMB = (
    "["
    + ",".join([f"&a{i} [" + ",".join([f"*a{i - 1}" if i else "1"] * 9) + "]" for i in range(9)])
    + "]"
)


@given(
    st.one_of(
        st.tuples(st.sampled_from(["epochs", "attention", " lr ", "", "a=b"]), yaml_value_text).map(
            "=".join
        ),
        st.text(max_size=30),
    )
)
@example("epochs=&a [*a]")
@example("epochs='unterminated")
@example(f"scale={BOMB}")  # a billion laughs in YAML
def test_parse_override(item):
    from attnyolo.engine.config import parse_override

    parsed = run_parser(parse_override, item, names=[item, *item.split("=")])
    if parsed is not None:
        key, value = parsed
        assert isinstance(key, str) and key == key.strip()
        yaml.safe_dump(value)  # plain YAML data: no objects, no self-references


# Values of each setting's own type, mutated within it: negative, zero, huge, empty, unknown
# names. Values of the wrong type, NaN and infinite numbers are tried one by one in
# test_train_config_wrong_types below.
finite = st.floats(-10, 1e6, allow_nan=False, allow_infinity=False)
setting_text = st.one_of(
    st.sampled_from(["", "x", "auto", "fast", "original", "cbam", "cbam:reduction=8", "voc"]),
    st.text(max_size=8),
)


def setting_values(default: object) -> st.SearchStrategy:
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.one_of(
            st.integers(-10, 10), st.integers(-(10**12), 10**12), st.sampled_from([416, 320])
        )
    if isinstance(default, float):
        return st.one_of(finite, st.integers(-10, 10))
    if isinstance(default, list):
        items = (
            setting_text if isinstance(default[0], str) else st.one_of(finite, st.integers(-5, 5))
        )
        return st.one_of(st.just(default), st.lists(items, max_size=4))
    return st.one_of(st.just(default), setting_text)  # str, or None for an optional setting


@st.composite
def train_yaml(draw) -> bytes:
    from attnyolo.engine.config import default_config

    defaults = default_config()
    config = {"data": draw(st.sampled_from(["voc", "x", ""]))} if draw(st.integers(0, 9)) else {}
    for key in draw(st.lists(st.sampled_from(sorted(defaults)), max_size=4)):
        config[key] = draw(setting_values(defaults[key]))
    if not draw(st.integers(0, 9)):
        config[draw(st.text(max_size=4))] = draw(json_values)  # an unknown setting
    if not draw(st.integers(0, 19)):
        config = draw(st.one_of(st.lists(json_values), st.text(), st.integers()))
    return yaml.safe_dump(config, allow_unicode=draw(st.booleans())).encode()


@given(train_yaml())
def test_train_config(data):
    from attnyolo.engine.config import default_config, resolve_config

    with folder() as root:
        path = root / "train.yaml"
        path.write_bytes(data)
        try:
            loaded = yaml.safe_load(data.decode("utf-8", "replace"))
        except yaml.YAMLError:
            loaded = None
        keys = [str(k) for k in loaded] if isinstance(loaded, dict) else []
        # check_config's messages name the setting at fault rather than the file.
        config = run_parser(resolve_config, path, names=[path, *keys, *default_config()])
        if config is not None:
            assert set(config) == set(default_config()) | {"recipe"}, sorted(config)
            assert (
                isinstance(config["epochs"], int) and 0 <= config["init_epoch"] < config["epochs"]
            )
            low, high = config["scale"]
            assert 0 < low <= high


@pytest.mark.parametrize(
    "data",
    [b"\xff\xfedata: x", b"data: [x", b"data: x\n@", b"\x00", b"data: x\nscale: &a [*a]"],
    ids=["utf16", "unclosed", "bad-token", "nul", "self-reference"],
)
def test_train_config_unreadable(data):
    from attnyolo.engine.config import resolve_config

    with folder() as root:
        path = root / "train.yaml"
        path.write_bytes(data)
        assert run_parser(resolve_config, path, names=[path]) is None


@pytest.mark.parametrize(
    "config",
    [
        {"scale": [1, "a"]},
        {"attention_positions": [[1]]},
        {"weights": 5},
        {"anchors": 3},
        {"input_size": None},
        {"input_size": 1.5},
        {1: 2, "b": 3},
        {"mosaic": float("nan")},
        {"init_lr": float("nan")},
        {"init_lr": float("inf")},
    ],
    ids=repr,
)
def test_train_config_wrong_types(config):
    from attnyolo.engine.config import default_config, resolve_config

    with folder() as root:
        path = root / "train.yaml"
        path.write_text(yaml.safe_dump({"data": "x", **config}, sort_keys=False))
        keys = [str(k) for k in config]
        assert run_parser(resolve_config, path, names=[path, *keys, *default_config()]) is None
