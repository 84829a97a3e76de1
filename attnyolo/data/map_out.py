"""The original scripts' `map_out` folder as a data set: `ground-truth/<image id>.txt` beside
`detection-results/<image id>.txt`, as its `get_map.py` writes them and its `get_map` reads them.

A ground-truth line is `class x1 y1 x2 y2`, or `class x1 y1 x2 y2 difficult`; a detection line is
`class score x1 y1 x2 y2`. A class name may contain spaces: the numbers (and the flag) are the last
fields. The values are kept as written, in float64: get_map computes its IoU (with VOC's `+1`) on
`float()` of the text, and any other convention or a float32 round trip would move IoUs that sit
at the threshold and the order of tied scores. The images are not needed, and not read.

Records come in get_map's order, the ground-truth files sorted by name with their `.txt`
(`a-1.txt` before `a.txt`), which is also the order it visits the detection files in when it
breaks score ties. Hidden files are skipped, as its `glob` does.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from attnyolo.data._common import ClassNames, Report, counted, read_class_names, read_text
from attnyolo.data.records import Dataset, TextRecord

GROUND_TRUTH = "ground-truth"
DETECTION_RESULTS = "detection-results"

_GT_FORMAT = "'class x1 y1 x2 y2' or 'class x1 y1 x2 y2 difficult'"
_DETECTION_FORMAT = "'class score x1 y1 x2 y2'"


def is_map_out(path: Path) -> bool:
    """A `map_out` folder (it holds `ground-truth/`) or its `ground-truth/` folder itself."""
    return path.is_dir() and (path.name == GROUND_TRUTH or (path / GROUND_TRUTH).is_dir())


def map_out_folders(path: str | os.PathLike) -> tuple[Path, Path]:
    """`(ground-truth folder, detection-results folder)` of a map_out folder or of its
    ground-truth folder; the second may not exist."""
    path = Path(path)
    root = path.parent if path.name == GROUND_TRUTH else path
    return root / GROUND_TRUTH, root / DETECTION_RESULTS


def text_files(folder: Path) -> list[Path]:
    """`folder/*.txt` in get_map's order: sorted by full name, hidden files left out (Python's
    `glob` skips them; `Path.glob` would not)."""
    return sorted(p for p in folder.glob("*.txt") if not p.name.startswith(".") and p.is_file())


def text_lines(path: Path) -> list[tuple[int, str]]:
    """`(line number, line)` of the non-blank lines. Lines end at newlines only (universal
    newlines), as `readlines` splits them; `str.splitlines` would also split at form feeds."""
    text = read_text(path)
    return [(n, line) for n, line in enumerate(text.split("\n"), 1) if line.strip()]


def parse_ground_truth_line(line: str, where: str) -> tuple[str, list[float], bool]:
    """`(class name, [x1, y1, x2, y2], difficult)` of a ground-truth line.

    Raises:
        ValueError: a malformed line, a non-finite value or inverted corners, naming `where`.
    """
    parts = line.split()
    difficult = bool(parts) and parts[-1] == "difficult"
    fields = parts[:-1] if difficult else parts
    try:
        box = [float(v) for v in fields[-4:]]
    except ValueError:
        box = []
    name = " ".join(fields[:-4])
    if not name or len(box) != 4:
        raise ValueError(f"{where}: expected {_GT_FORMAT}, got {line!r}")
    check_box(box, 0.0, where)
    return name, box, difficult


def parse_detection_line(line: str, where: str) -> tuple[str, float, list[float]]:
    """`(class name, score, [x1, y1, x2, y2])` of a detection line.

    Raises:
        ValueError: a malformed line, a non-finite value or inverted corners, naming `where`.
    """
    parts = line.split()
    try:
        score, *box = (float(v) for v in parts[-5:])
    except ValueError:
        score, box = math.nan, []
    name = " ".join(parts[:-5])
    if not name or len(box) != 4:
        raise ValueError(f"{where}: expected {_DETECTION_FORMAT}, got {line!r}")
    check_box(box, score, where)
    return name, score, box


def check_box(box: list[float], score: float, where: str) -> None:
    """Raises ValueError, naming `where`, for a non-finite value or inverted corners."""
    if not all(math.isfinite(v) for v in (*box, score)):
        raise ValueError(f"{where}: non-finite value in box {box} / score {score}")
    if box[2] < box[0] or box[3] < box[1]:
        raise ValueError(f"{where}: box {box} has x2 < x1 or y2 < y1")


def read_map_out(
    path: str | os.PathLike, split: str | None = None, class_names: ClassNames = None
) -> Dataset:
    """Reads the ground truth of a `map_out` folder (see the module docstring).

    Args:
        path: the map_out folder, or its `ground-truth/` folder.
        split: ignored; one folder is one split.
        class_names: None for the sorted union of the class names in the ground truth and in the
            sibling `detection-results/` files, so that every detection has a class (get_map gives
            no AP to a class without non-difficult ground truth, and neither does `evaluate_voc`).
            Given names are used as they are; boxes of other classes are skipped with a warning.

    Returns:
        A `Dataset` of `TextRecord`s, one per ground-truth file: `image` is that file, `image_id`
        its name without `.txt`, `size` None.

    Raises:
        FileNotFoundError: no ground-truth folder, or no `.txt` file in it.
        ValueError: a malformed line, naming the file and line.
    """
    gt_folder, dr_folder = map_out_folders(path)
    if not gt_folder.is_dir():
        raise FileNotFoundError(f"{path}: no {GROUND_TRUTH}/ folder")
    files = text_files(gt_folder)
    if not files:
        raise FileNotFoundError(f"{gt_folder}: no ground-truth .txt files")
    parsed = []
    for file in files:
        lines = [parse_ground_truth_line(line, f"{file}:{n}") for n, line in text_lines(file)]
        parsed.append((file, lines))

    names = read_class_names(class_names)
    if names is None:
        found = {name for _, lines in parsed for name, _, _ in lines}
        if dr_folder.is_dir():
            for file in text_files(dr_folder):
                for n, line in text_lines(file):
                    found.add(parse_detection_line(line, f"{file}:{n}")[0])
        names = sorted(found)
    index = {name: k for k, name in enumerate(names)}

    report = Report(str(path))
    records = []
    for file, lines in parsed:
        known = [entry for entry in lines if entry[0] in index]
        if len(known) < len(lines):
            unknown = sorted({name for name, _, _ in lines} - set(index))
            skipped = len(lines) - len(known)
            detail = f"{counted(skipped, 'box')} of unknown classes {unknown} skipped"
            report.warn(file, "unknown class", detail, skipped)
        records.append(
            TextRecord(
                file,
                np.array([box for _, box, _ in known], np.float64).reshape(-1, 4),
                np.array([index[name] for name, _, _ in known], np.int64),
                np.array([hard for _, _, hard in known], bool),
                image_id=file.stem,
            )
        )
    report.finish(records)
    return Dataset(records, list(names), str(path))
