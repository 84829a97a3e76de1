"""Darknet `.cfg` + `.weights` reading and writing for YOLOv4-tiny.

Darknet's weight file is a header (int32 major, minor, revision; then `seen` as int64 when
major * 10 + minor >= 2, else int32) followed by float32 values, layer after layer in cfg order.
A convolution with batch norm stores `beta[n], gamma[n], mean[n], variance[n], kernel[n, c, k, k]`;
one without stores `bias[n], kernel[n, c, k, k]`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from attnyolo.models.yolo import DARKNET_CONVS, HEAD_OUTPUTS, YOLOv4Tiny
from attnyolo.utils import atomic_write


class DarknetError(ValueError):
    """A Darknet cfg or weights file that cannot be used, with the file named."""


@dataclass
class ConvSpec:
    index: int  # the layer's index in the cfg (what Darknet and OpenCV call it)
    filters: int
    size: int
    stride: int
    in_channels: int
    batch_normalize: bool

    @property
    def kernel_count(self) -> int:
        return self.filters * self.in_channels * self.size * self.size

    @property
    def weight_count(self) -> int:
        return self.kernel_count + self.filters * (4 if self.batch_normalize else 1)


@dataclass
class DarknetNet:
    path: Path
    net: dict[str, str]
    convs: list[ConvSpec]
    yolos: list[dict[str, str]]

    @property
    def weight_count(self) -> int:
        return sum(c.weight_count for c in self.convs)

    @property
    def input_size(self) -> tuple[int, int]:
        return self._option("net", "height", _positive, "416"), self._option(
            "net", "width", _positive, "416"
        )

    @property
    def num_classes(self) -> int:
        return self._option("yolo", "classes", _positive)

    @property
    def anchors(self) -> list[tuple[float, float]]:
        return self._option("yolo", "anchors", _anchors)

    @property
    def anchor_masks(self) -> list[list[int]]:
        masks = [self._option("yolo", "mask", _indices, head=k) for k in range(len(self.yolos))]
        count = len(self.anchors)
        if any(not 0 <= i < count for mask in masks for i in mask):
            raise DarknetError(
                f"{self.path}: a [yolo] mask {masks} names none of the {count} anchors"
            )
        return masks

    @property
    def xy_scale(self) -> float:
        return self._option("yolo", "scale_x_y", _finite, "1.0")

    def _option(self, section: str, key: str, parse, default: str | None = None, head: int = 0):
        """`parse` of an option of [net] or of the `head`-th [yolo]; a missing or malformed one
        is a DarknetError naming the file, the section and the value."""
        if section == "net":
            options = self.net
        elif head < len(self.yolos):
            options = self.yolos[head]
        else:
            raise DarknetError(f"{self.path}: no [yolo] section")
        value = options.get(key, default)
        if value is None:
            raise DarknetError(f"{self.path}: the [{section}] section has no {key}=")
        try:
            return parse(value)
        except ValueError as e:
            raise DarknetError(f"{self.path}: [{section}] {key}={value!r}: {e}") from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("not a positive integer")
    return value


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


def _indices(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def _anchors(text: str) -> list[tuple[float, float]]:
    values = [float(v) for v in text.split(",") if v.strip()]
    if not values or len(values) % 2 or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError("anchors are positive width, height pairs")
    return list(zip(values[0::2], values[1::2], strict=True))


@dataclass
class LoadReport:
    """What a weight import loaded, skipped (with the reason) and left at its initial values."""

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    untouched: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"Loaded {len(self.loaded)} layers from {self.source}"]
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped]
        if self.untouched:
            lines.append(f"  kept initial values (not in the file): {', '.join(self.untouched)}")
        return "\n".join(lines)


def parse_cfg(path: str | os.PathLike) -> list[tuple[str, dict[str, str]]]:
    """Reads a Darknet cfg into `[(section, {key: value})]`, in order."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DarknetError(f"{path}: cannot read cfg: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise DarknetError(f"{path}: not a text cfg (byte {e.start}: {e.reason})") from None
    sections: list[tuple[str, dict[str, str]]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise DarknetError(f"{path}:{lineno}: malformed section header {raw!r}")
            sections.append((line[1:-1].strip(), {}))
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1][1][key.strip()] = value.strip()
        else:
            raise DarknetError(f"{path}:{lineno}: expected 'key=value' or '[section]', got {raw!r}")
    if not sections or sections[0][0] not in ("net", "network"):
        raise DarknetError(f"{path}: not a Darknet cfg (it must start with a [net] section)")
    return sections


def read_cfg(path: str | os.PathLike) -> DarknetNet:
    """Parses a cfg and follows the channel counts through it to size every convolution."""
    path = Path(path)
    sections = parse_cfg(path)
    net = sections[0][1]
    try:
        channels = [_positive(net.get("channels", "3"))]  # channels[i + 1]: layer i's output
    except ValueError:
        raise DarknetError(f"{path}: [net] channels={net['channels']!r} is malformed") from None
    convs: list[ConvSpec] = []
    yolos: list[dict[str, str]] = []
    for index, (kind, opts) in enumerate(sections[1:]):
        current = channels[-1]
        try:
            if kind == "convolutional":
                spec = ConvSpec(
                    index=index,
                    filters=_positive(opts["filters"]),
                    size=_positive(opts.get("size", "1")),
                    stride=_positive(opts.get("stride", "1")),
                    in_channels=current // _positive(opts.get("groups", "1")),
                    batch_normalize=bool(int(opts.get("batch_normalize", 0))),
                )
                convs.append(spec)
                current = spec.filters
            elif kind == "route":
                refs = [int(v) for v in opts["layers"].split(",")]
                refs = [r if r >= 0 else index + r for r in refs]
                if not all(0 <= r < index for r in refs):
                    raise ValueError(f"layers={opts['layers']} names no earlier layer")
                current = sum(channels[r + 1] for r in refs) // _positive(opts.get("groups", "1"))
            elif kind in ("yolo", "region"):
                yolos.append(opts)
            elif kind not in ("maxpool", "upsample", "shortcut", "dropout"):
                raise DarknetError(f"{path}: layer {index} [{kind}] is not supported")
        except (KeyError, ValueError, IndexError) as e:
            if isinstance(e, DarknetError):
                raise
            raise DarknetError(f"{path}: layer {index} [{kind}] is malformed: {e!r}") from None
        if current < 1:
            raise DarknetError(f"{path}: layer {index} [{kind}] has no output channels left")
        channels.append(current)
    return DarknetNet(path, net, convs, yolos)


def read_weights(
    path: str | os.PathLike, expected: int
) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """Reads a `.weights` file: `(major, minor, revision, seen)` and its `expected` float32 values.

    Raises:
        DarknetError: the file is missing, truncated, or holds another number of values.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DarknetError(f"{path}: cannot read weights: {e.strerror or e}") from None
    if len(data) < 16:
        raise DarknetError(f"{path}: {len(data)} bytes is too short for a Darknet weights header")
    major, minor, revision = (int(v) for v in np.frombuffer(data, "<i4", 3))
    wide_seen = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    header_size = 20 if wide_seen else 16
    if len(data) < header_size:
        raise DarknetError(
            f"{path}: {len(data)} bytes is too short for the 20-byte header of version "
            f"{major}.{minor}"
        )
    seen = int(np.frombuffer(data, "<i8" if wide_seen else "<i4", 1, 12)[0])
    payload = len(data) - header_size
    actual = payload // 4
    if payload % 4 or actual != expected:
        what = "truncated" if actual < expected else "too long"
        raise DarknetError(
            f"{path}: {what}: the cfg needs {expected:,} weights ({expected * 4 + header_size:,} "
            f"bytes with the {header_size}-byte header), the file holds {payload / 4:,.2f} weights "
            f"({len(data):,} bytes). Is it the weights file for this cfg?"
        )
    values = np.frombuffer(data, "<f4", expected, header_size).astype(np.float32)
    return (major, minor, revision, seen), values


def _check_structure(net: DarknetNet, model: YOLOv4Tiny) -> None:
    """Raises unless the cfg is YOLOv4-tiny: same convolutions in the same order (heads aside)."""
    if len(net.convs) != len(DARKNET_CONVS) or len(net.yolos) != 2:
        raise DarknetError(
            f"{net.path}: cfg does not match YOLOv4-tiny: it has {len(net.convs)} convolutional "
            f"and {len(net.yolos)} yolo layers, YOLOv4-tiny has {len(DARKNET_CONVS)} and 2"
        )
    for spec, name in zip(net.convs, DARKNET_CONVS, strict=True):
        kh, kw, cin, cout = model.find_layer(name).kernel.shape
        if name in HEAD_OUTPUTS:
            cout = spec.filters  # the class count may differ; checked when loading
        if (spec.size, spec.in_channels, spec.filters) != (kh, cin, cout):
            raise DarknetError(
                f"{net.path}: cfg does not match YOLOv4-tiny at layer {spec.index}: "
                f"{spec.size}x{spec.size} conv {spec.in_channels}->{spec.filters}, expected "
                f"{kh}x{kw} conv {cin}->{cout} ({name})"
            )


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def load_darknet_weights(
    model: YOLOv4Tiny, cfg: str | os.PathLike, weights: str | os.PathLike
) -> LoadReport:
    """Loads Darknet weights into a YOLOv4-tiny model, attention or not.

    Every convolution whose shape matches is loaded; a head whose class count differs is skipped
    and reported; attention layers keep their initial values and are listed as untouched.
    """
    net = read_cfg(cfg)
    _check_structure(net, model)
    _, values = read_weights(weights, net.weight_count)
    report = LoadReport(source=str(weights))
    offset = 0
    for spec, name in zip(net.convs, DARKNET_CONVS, strict=True):
        chunk = values[offset : offset + spec.weight_count]
        offset += spec.weight_count
        n = spec.filters
        conv = model.find_layer(name)
        if conv.kernel.shape[-1] != n:
            report.skipped.append(
                (
                    name,
                    f"{n} filters in the file ({net.num_classes} classes), "
                    f"{conv.kernel.shape[-1]} in the model ({model.num_classes} classes)",
                )
            )
            continue
        head = chunk[: 4 * n] if spec.batch_normalize else chunk[:n]
        kernel = chunk[len(head) :].reshape(n, spec.in_channels, spec.size, spec.size)
        kernel = kernel.transpose(
            2, 3, 1, 0
        )  # Darknet (out, in, kh, kw) -> Keras (kh, kw, in, out)
        if spec.batch_normalize:
            beta, gamma, mean, var = head.reshape(4, n)
            conv.set_weights([kernel])
            model.find_layer(f"{name}_bn").set_weights([gamma, beta, mean, var])
        else:
            conv.set_weights([kernel, head])
        report.loaded.append(name)
    known = set(DARKNET_CONVS) | {f"{n}_bn" for n in DARKNET_CONVS}
    report.untouched = [
        layer.name
        for layer in _all_layers(model)
        if layer.weights and not hasattr(layer, "layers") and layer.name not in known
    ]
    return report


def model_from_darknet(
    cfg: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    classes=None,
    **kwargs,
) -> tuple[YOLOv4Tiny, LoadReport | None]:
    """Builds a YOLOv4-tiny from a cfg (input size, classes, anchors, masks, `scale_x_y`) and
    loads `weights` into it.

    Args:
        cfg: the `.cfg` file.
        weights: the `.weights` file, or None for a randomly initialised model.
        classes: class names (e.g. from `coco.names`) or a count; defaults to the cfg's count.
        **kwargs: passed to `YOLOv4Tiny` (e.g. `attention="cbam"`, `input_size=...`).
    """
    net = read_cfg(cfg)
    if len(net.yolos) != 2:
        raise DarknetError(
            f"{net.path}: YOLOv4-tiny has 2 [yolo] layers, this cfg has {len(net.yolos)}"
        )
    classes = net.num_classes if classes is None else classes
    count = classes if isinstance(classes, int) else len(classes)
    if count != net.num_classes:
        raise DarknetError(
            f"{net.path}: the cfg has classes={net.num_classes}, but {count} class names were given"
        )
    options = dict(
        classes=classes,
        input_size=net.input_size,
        anchors=net.anchors,
        anchor_masks=net.anchor_masks,
        xy_scale=net.xy_scale,
    )
    model = YOLOv4Tiny(**{**options, **kwargs})
    report = None if weights is None else load_darknet_weights(model, cfg, weights)
    return model, report


def darknet_cfg_text(model: YOLOv4Tiny) -> str:
    """The `yolov4-tiny.cfg` text for this model's input size, classes, anchors and xy scale."""
    height, width = model.input_size
    anchors = ",  ".join(f"{w:g},{h:g}" for w, h in model.anchors)
    filters = len(model.anchor_masks[0]) * (5 + model.num_classes)
    cfg = _CFG_TEMPLATE.format(width=width, height=height)

    def yolo(mask) -> str:
        return _YOLO_TEMPLATE.format(
            mask=",".join(map(str, mask)),
            anchors=anchors,
            classes=model.num_classes,
            num=len(model.anchors),
            scale_x_y=f"{model.xy_scale:g}",
        )

    return cfg.format_map(
        {
            "filters": filters,
            "yolo0": yolo(model.anchor_masks[0]),
            "yolo1": yolo(model.anchor_masks[1]),
        }
    )


def save_darknet(
    model: YOLOv4Tiny, weights: str | os.PathLike, cfg: str | os.PathLike | None = None
) -> None:
    """Writes the model as Darknet `.weights` (and its `.cfg` when `cfg` is given), atomically.

    Only a model without attention can be written: Darknet has no attention layers.
    """
    if model.attention is not None:
        raise DarknetError(
            f"Darknet has no layer for attention {model.attention!r}: only a model without "
            "attention can be written as .weights"
        )
    parts = [np.array([0, 2, 5], "<i4").tobytes(), np.array([0], "<i8").tobytes()]
    for name in DARKNET_CONVS:
        conv = model.find_layer(name)
        kernel = keras.ops.convert_to_numpy(conv.kernel).transpose(
            3, 2, 0, 1
        )  # Keras -> Darknet order
        if conv.use_bias:
            parts.append(keras.ops.convert_to_numpy(conv.bias).astype("<f4").tobytes())
        else:
            gamma, beta, mean, var = (
                keras.ops.convert_to_numpy(w) for w in model.find_layer(f"{name}_bn").weights
            )
            parts.append(np.concatenate([beta, gamma, mean, var]).astype("<f4").tobytes())
        parts.append(kernel.astype("<f4").tobytes())
    atomic_write(weights, b"".join(parts))
    if cfg is not None:
        atomic_write(cfg, darknet_cfg_text(model))


_YOLO_TEMPLATE = """[yolo]
mask = {mask}
anchors = {anchors}
classes={classes}
num={num}
jitter=.3
scale_x_y = {scale_x_y}
cls_normalizer=1.0
iou_normalizer=0.07
iou_loss=ciou
ignore_thresh = .7
truth_thresh = 1
random=0
resize=1.5
nms_kind=greedynms
beta_nms=0.6
"""

_CONV = (
    "[convolutional]\nbatch_normalize=1\nfilters={f}\nsize={s}\nstride={st}\npad=1\n"
    "activation=leaky\n"
)


def _conv(filters: int, size: int, stride: int = 1) -> str:
    return _CONV.format(f=filters, s=size, st=stride)


def _csp(filters: int) -> str:
    half = filters // 2
    return (
        _conv(filters, 3)
        + "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n"
        + _conv(half, 3)
        + _conv(half, 3)
        + "[route]\nlayers = -1,-2\n"
        + _conv(filters, 1)
        + "[route]\nlayers = -6,-1\n"
        + "[maxpool]\nsize=2\nstride=2\n"
    )


_OUT = "[convolutional]\nsize=1\nstride=1\npad=1\nfilters={{filters}}\nactivation=linear\n"

# Darknet's yolov4-tiny.cfg, generated so that sizes, classes and anchors are filled in; doubled
# braces survive the first format() call for the fields filled by the second.
_CFG_TEMPLATE = (
    "[net]\nbatch=64\nsubdivisions=1\nwidth={width}\nheight={height}\nchannels=3\n"
    "momentum=0.9\ndecay=0.0005\n\n"
    + _conv(32, 3, 2)
    + _conv(64, 3, 2)
    + _csp(64)
    + _csp(128)
    + _csp(256)
    + _conv(512, 3)
    + _conv(256, 1)
    + _conv(512, 3)
    + _OUT
    + "{{yolo0}}"
    + "[route]\nlayers = -4\n"
    + _conv(128, 1)
    + "[upsample]\nstride=2\n"
    + "[route]\nlayers = -1, 23\n"
    + _conv(256, 3)
    + _OUT
    + "{{yolo1}}"
)
