"""Images and data sets: reading, transforms, batches."""

from attnyolo.data.datasets import (
    DatasetWarning,
    coco_category_ids,
    load_dataset,
    read_annotation_lines,
    read_class_names,
    read_coco,
    read_data_yaml,
    read_voc,
    read_yolo,
    write_annotation_lines,
)
from attnyolo.data.images import ImageError, letterbox, load_image, resize
from attnyolo.data.records import Dataset, Record
from attnyolo.data.split import split_voc
from attnyolo.data.synthetic import generate_shapes

__all__ = [
    "Dataset",
    "DatasetWarning",
    "ImageError",
    "Record",
    "coco_category_ids",
    "generate_shapes",
    "letterbox",
    "load_dataset",
    "load_image",
    "read_annotation_lines",
    "read_class_names",
    "read_coco",
    "read_data_yaml",
    "read_voc",
    "read_yolo",
    "resize",
    "split_voc",
    "write_annotation_lines",
]
