"""Looking inside a detector: where its heads see objects (the objectness heatmap) and what its
attention layers weight, on one image.

The heatmap is the original scripts' (`YOLO.detect_heatmap`, `predict.py` mode `"heatmap"`): per
head, the raw output reshaped to `(grid_h, grid_w, anchors, 5 + classes)`, the score of a cell the
largest `sigmoid(objectness)` over its anchors, each head's map resized bilinearly to the image and
the maximum taken over the heads, drawn with matplotlib's `jet` at alpha 0.5 over the image. Three
deliberate differences:

- the original resizes each whole input-sized map to the image, which is right for a stretched
  input but shifts and squeezes the map under letterbox (the grey bars are spread over the image);
  here every image pixel centre is carried through the preprocessing transform into the grid and
  sampled there, which crops the padding away first and equals the original's `cv2.resize`
  (bilinear, half-pixel centres, clamped borders) when the input is stretched;
- the map stays float32 in [0, 1] (the original rounds it to uint8 levels);
- colours are fixed to [0, 1] (the original's `imshow` stretches them to each image's range), so a
  colour means the same objectness on every image.

Attention maps are the gates each attention layer applies (`attention_maps`, see
`attnyolo.layers.registry.ATTENTION_MAP_LAYOUTS`), computed on the layer's own input for this
image; spatial gates, full (H, W, C) gates as their mean over the channels, and residuals (what
a layer adds to its input, (H, W, C)) as their mean absolute value over the channels, are drawn
over the image with the same letterbox-aware sampling.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from attnyolo.inference.config import InferenceConfig
from attnyolo.inference.keras_runtime import KerasRuntime
from attnyolo.inference.preprocess import Preprocessor
from attnyolo.layers.registry import supports_attention_maps
from attnyolo.utils import atomic_path, atomic_write

# The overlay of the original scripts: matplotlib's jet at alpha 0.5 over the image.
COLORMAP = "jet"
ALPHA = 0.5
DEFAULT_TOP = 10
# Maps whose last axis is the channel axis, and what their other axis is (for titles and stats).
CHANNEL_MAPS = {"channel", "height", "width", "full", "residual"}
# Maps that are added to the input (any sign), not multiplied: their channels are ranked by
# magnitude.
ADDED_MAPS = {"residual"}
# The maps that have a picture of their own in `save_attention_figures`; others get a generic one.
DRAWN_MAPS = {"channel", "spatial", "height", "width", "full", "residual"}


@dataclass(frozen=True)
class HeatmapResult:
    """The objectness heatmap of one image.

    Attributes:
        image: the RGB uint8 image `(height, width, 3)`.
        heatmap: `(height, width)` float32 in [0, 1]: the maximum over the heads.
        heads: per head (stride 32 first), its map at the image's size.
        grids: per head, its map at the head's grid size `(grid_h, grid_w)`.
        input_size: the network's `(height, width)`.
        transform: `(scale_x, scale_y, pad_x, pad_y)`: input pixel = image pixel x scale + pad.
        letterbox: whether the input was letterboxed (else stretched).
    """

    image: np.ndarray
    heatmap: np.ndarray
    heads: list[np.ndarray]
    grids: list[np.ndarray]
    input_size: tuple[int, int]
    transform: np.ndarray
    letterbox: bool

    def overlay(self, path: str | Path) -> Path:
        """Writes the heatmap over the image as a PNG (see `save_heatmap`)."""
        return save_heatmap(self.image, self.heatmap, path)


@dataclass(frozen=True)
class AttentionMaps:
    """The gates one attention layer applies to its input (or what it adds) for one image.

    Attributes:
        name: the layer's name (`"{position}_{type}"` in a `YOLOv4Tiny`).
        type: its registered attention name (`"cbam"`, ...), else its class name.
        position: where it sits (`"feat1"`, `"feat2"`, `"p5_upsample"`), else its name.
        maps: the maps by key, NumPy, without the batch axis: `channel` `(C,)`, `spatial`
            `(H, W)`, `height` `(H, C)`, `width` `(W, C)`, `full` `(H, W, C)`, `residual`
            `(H, W, C)`, `H x W` being the layer's grid.
        features: the shape `(H, W, C)` of the layer's input.
        input_size: the network's `(height, width)`.
        transform: the preprocessing transform of the image (as `HeatmapResult.transform`).
    """

    name: str
    type: str
    position: str
    maps: dict[str, np.ndarray]
    features: tuple[int, int, int]
    input_size: tuple[int, int]
    transform: np.ndarray = field(repr=False)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {key: tuple(value.shape) for key, value in self.maps.items()}

    def stats(self, top: int = DEFAULT_TOP) -> dict:
        """Min, mean and max of each map; for maps with a channel axis the `top` channels by
        their (mean) weight, largest first (for a `residual`, by its mean absolute value over
        the positions)."""
        out = {}
        for key, value in self.maps.items():
            entry = {
                "shape": list(value.shape),
                "min": float(value.min()),
                "mean": float(value.mean()),
                "max": float(value.max()),
            }
            if key in CHANNEL_MAPS:
                per_channel = value.reshape(-1, value.shape[-1])
                if key in ADDED_MAPS:
                    per_channel = np.abs(per_channel)
                per_channel = per_channel.mean(axis=0)
                order = np.argsort(-per_channel, kind="stable")[:top]
                entry["top_channels"] = [
                    {"channel": int(i), "weight": float(per_channel[i])} for i in order
                ]
            out[key] = entry
        return out


def objectness_heatmap(
    model,
    image: np.ndarray,
    *,
    letterbox: bool | None = None,
    resize_filter: str | None = None,
) -> HeatmapResult:
    """Where the detector sees objects: per image pixel, the largest objectness of any anchor of
    any head (the original scripts' heatmap, letterbox-aware; see the module docstring).

    Args:
        model: a `YOLOv4Tiny`.
        image: RGB uint8 `(height, width, 3)`.
        letterbox: letterbox (True) or stretch (False) the image; None: as the model was
            trained (stretch where unknown).
        resize_filter: `"opencv"` or `"pillow"`; None: the model's, else the default.

    Returns:
        A `HeatmapResult`; `.overlay(path)` writes the picture.
    """
    image = _check_image(image)
    config = InferenceConfig.from_model(model)
    preprocessor = Preprocessor.from_config(
        config, letterbox=letterbox, resize_filter=resize_filter
    )
    x, transform = preprocessor(image)
    heads = KerasRuntime(model)(x[None])
    grids = [
        head_objectness(head[0], len(mask))
        for head, mask in zip(heads, config.anchor_masks, strict=True)
    ]
    image_size = image.shape[:2]
    per_head = [grid_to_image(g, config.input_size, transform, image_size) for g in grids]
    return HeatmapResult(
        image=image,
        heatmap=np.max(per_head, axis=0).astype(np.float32),
        heads=per_head,
        grids=grids,
        input_size=config.input_size,
        transform=transform,
        letterbox=preprocessor.letterbox,
    )


def head_objectness(head: np.ndarray, num_anchors: int) -> np.ndarray:
    """`(grid_h, grid_w)` float32: the largest `sigmoid(objectness)` over a cell's anchors, from
    one raw head `(grid_h, grid_w, anchors * (5 + classes))` (Darknet's layout: anchor-major,
    then x, y, w, h, objectness, classes)."""
    grid_h, grid_w, channels = head.shape
    if channels % num_anchors or channels // num_anchors < 6:
        raise ValueError(
            f"a head of shape {head.shape} does not hold {num_anchors} anchors of "
            "(x, y, w, h, objectness, classes...)"
        )
    logits = np.asarray(head, np.float64).reshape(grid_h, grid_w, num_anchors, -1)[..., 4]
    return (1.0 / (1.0 + np.exp(-logits))).max(axis=-1).astype(np.float32)


def grid_to_image(
    grid: np.ndarray,
    input_size: Sequence[int],
    transform: Sequence[float],
    image_size: Sequence[int],
) -> np.ndarray:
    """A map over the network input's grid, sampled at the centre of every image pixel.

    Each image pixel centre `(u + 0.5, v + 0.5)` goes through the preprocessing transform into
    input pixels (`x = (u + 0.5) * scale_x + pad_x`), then into grid cells (cell centres at
    `(j + 0.5) * stride`), where the grid is interpolated bilinearly, clamped at its borders. The
    letterbox padding therefore never reaches the image; for a stretched input this is
    `cv2.resize(grid, image size, INTER_LINEAR)`.

    Args:
        grid: `(grid_h, grid_w)` over the whole network input.
        input_size: the network's `(height, width)`.
        transform: `(scale_x, scale_y, pad_x, pad_y)`: input pixel = image pixel x scale + pad.
        image_size: the image's `(height, width)`.

    Returns:
        `(image_height, image_width)` float32.
    """
    grid = np.asarray(grid, np.float64)
    (height, width), (image_h, image_w) = input_size, image_size
    scale_x, scale_y, pad_x, pad_y = (float(v) for v in transform)
    grid_h, grid_w = grid.shape[:2]
    cols = ((np.arange(image_w) + 0.5) * scale_x + pad_x) * grid_w / width - 0.5
    rows = ((np.arange(image_h) + 0.5) * scale_y + pad_y) * grid_h / height - 0.5
    return _bilinear(grid, rows, cols).astype(np.float32)


def _bilinear(grid: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """`grid` at every (row, col) of a separable lattice of fractional cell positions."""

    def neighbours(coords, size):
        coords = np.clip(coords, 0, size - 1)
        low = np.floor(coords).astype(np.int64)
        return low, np.minimum(low + 1, size - 1), coords - low

    r0, r1, wr = neighbours(rows, grid.shape[0])
    c0, c1, wc = neighbours(cols, grid.shape[1])
    top = grid[r0][:, c0] * (1 - wc) + grid[r0][:, c1] * wc
    bottom = grid[r1][:, c0] * (1 - wc) + grid[r1][:, c1] * wc
    return top * (1 - wr)[:, None] + bottom * wr[:, None]


def overlay_image(
    image: np.ndarray, heatmap: np.ndarray, vmin: float = 0.0, vmax: float = 1.0
) -> np.ndarray:
    """RGB uint8: `heatmap` coloured with `jet` (`vmin`..`vmax`) at alpha 0.5 over `image`, the
    same compositing as the original's `plt.imshow(mask, alpha=0.5, cmap="jet")`."""
    image = _check_image(image)
    heatmap = np.asarray(heatmap, np.float64)
    if heatmap.shape != image.shape[:2]:
        raise ValueError(
            f"a heatmap of shape {heatmap.shape} does not fit an image of shape {image.shape}"
        )
    span = vmax - vmin if vmax > vmin else 1.0
    colors = matplotlib.colormaps[COLORMAP](np.clip((heatmap - vmin) / span, 0, 1))[..., :3]
    blended = ALPHA * colors * 255.0 + (1 - ALPHA) * image.astype(np.float64)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def save_heatmap(image: np.ndarray, heatmap: np.ndarray, path: str | Path) -> Path:
    """Writes `heatmap` (image-sized, in [0, 1]) in `jet` at alpha 0.5 over `image` as a PNG of
    the image's pixel size, without axes; atomically."""
    path = Path(path)
    picture = Image.fromarray(overlay_image(image, heatmap))
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
    return path


def attention_layers(model) -> list:
    """The model's top-level layers that can report their attention maps, in graph order."""
    return [layer for layer in model.layers if supports_attention_maps(layer)]


def attention_report(
    model,
    image: np.ndarray,
    *,
    letterbox: bool | None = None,
    resize_filter: str | None = None,
    source: str | None = None,
) -> list[AttentionMaps]:
    """The gates of every attention layer of `model` on one image.

    Attention layers are found generically: the model's top-level layers with an
    `attention_maps` method (a `YOLOv4Tiny` has them outside its nested backbone). One forward
    pass of a sub-model from the model's input to the layers' inputs gives each layer's input;
    `layer.attention_maps` turns it into the gates at inference.

    Args:
        model: a functional Keras model such as `YOLOv4Tiny`, each attention layer called once.
        image: RGB uint8 `(height, width, 3)`.
        letterbox: letterbox (True) or stretch (False); None: as the model was trained.
        resize_filter: `"opencv"` or `"pillow"`; None: the model's, else the default.
        source: what to call the model in messages (e.g. its file); default its name.

    Returns:
        One `AttentionMaps` per attention layer.

    Raises:
        ValueError: the model has no attention layers.
    """
    import keras

    layers = attention_layers(model)
    if not layers:
        attention = getattr(model, "attention", None) or "none"
        raise ValueError(f"{source or model.name} has no attention layers (attention: {attention})")
    image = _check_image(image)
    config = InferenceConfig.from_model(model)
    x, transform = Preprocessor.from_config(
        config, letterbox=letterbox, resize_filter=resize_filter
    )(image)
    probe = keras.Model(model.inputs, [layer.input for layer in layers])
    features = probe.predict_on_batch(x[None])
    if not isinstance(features, list | tuple):
        features = [features]
    reports = []
    for layer, feature in zip(layers, features, strict=True):
        maps = layer.attention_maps(feature)
        kind = getattr(layer, "attention_name", None) or type(layer).__name__
        suffix = f"_{kind}"
        position = layer.name[: -len(suffix)] if layer.name.endswith(suffix) else layer.name
        shape = tuple(int(v) for v in np.shape(feature)[1:])
        if getattr(layer, "data_format", "channels_last") == "channels_first":
            shape = (shape[1], shape[2], shape[0])
        reports.append(
            AttentionMaps(
                name=layer.name,
                type=kind,
                position=position,
                maps={
                    key: np.asarray(keras.ops.convert_to_numpy(value), np.float32)[0]
                    for key, value in maps.items()
                },
                features=shape,
                input_size=config.input_size,
                transform=transform,
            )
        )
    # In the model's order of positions where it has one (graph order puts feat2 first).
    positions = list(getattr(model, "attention_positions", ()))
    return sorted(
        reports,
        key=lambda r: positions.index(r.position) if r.position in positions else len(positions),
    )


def save_attention_figures(
    image: np.ndarray,
    reports: Sequence[AttentionMaps],
    out_dir: str | Path,
    *,
    top: int = DEFAULT_TOP,
) -> list[Path]:
    """One PNG per attention layer, and `attention.json` with every map's statistics.

    Each figure is titled with the layer's name, type, position and grid, and has one panel per
    kind of map:

    - a spatial gate (`spatial`): over the image in `jet`, colours spanning the map's own range
      (given in the panel's title), sampled letterbox-aware as the heatmap;
    - row and column gates (`height`, `width`, Coordinate Attention): the rows x channels and
      channels x columns matrices, and the outer product of their means over the channels drawn
      over the image, which is the average gate each pixel gets;
    - a full gate (`full`, one weight per position and channel: SimAM, SGE): its mean over the
      channels, drawn over the image as a spatial gate;
    - a residual (`residual`, what the layer adds at each position and channel: the additive
      global context `gca`, non-local `nl`): its mean absolute value over the channels, drawn
      over the image as a spatial gate (colours on the map's own range; one colour where the
      same vector is added everywhere, as in `gca`);
    - channel gates (`channel`): the weights sorted, largest first, the `top` channels labelled
      by index.

    Files are named `{layer name}.png`; all writes are atomic.

    Returns:
        The paths written: the figures in order, then `attention.json`.
    """
    image = _check_image(image)
    out_dir = Path(out_dir)
    paths = []
    for report in reports:
        figure = out_dir / f"{_safe(report.name)}.png"
        paths.append(_save_attention_figure(image, report, figure, top))
    first = reports[0] if reports else None
    document = {
        "image_size": list(image.shape[:2]),
        "input_size": list(first.input_size) if first else None,
        "transform": [float(v) for v in first.transform] if first else None,
        "layers": [
            {
                "name": r.name,
                "type": r.type,
                "position": r.position,
                "features": list(r.features),
                "figure": f"{_safe(r.name)}.png",
                "maps": r.stats(top),
            }
            for r in reports
        ],
    }
    paths.append(atomic_write(out_dir / "attention.json", json.dumps(document, indent=2) + "\n"))
    return paths


def _save_attention_figure(image, report: AttentionMaps, path: Path, top: int) -> Path:
    maps = report.maps
    panels = []  # functions drawing one panel each on the axes they get
    if "spatial" in maps:
        panels.append(partial(_draw_overlay, "spatial gate", image, report, maps["spatial"]))
    if "height" in maps:
        panels.append(partial(_draw_matrix, "row gates", maps["height"], "channel", "row"))
    if "width" in maps:
        panels.append(partial(_draw_matrix, "column gates", maps["width"].T, "column", "channel"))
    if "height" in maps and "width" in maps:
        # The average gate a pixel gets: its row's mean gate times its column's.
        outer = np.outer(maps["height"].mean(axis=-1), maps["width"].mean(axis=-1))
        panels.append(partial(_draw_overlay, "mean row x column gate", image, report, outer))
    if "full" in maps:
        mean = maps["full"].mean(axis=-1)
        panels.append(partial(_draw_overlay, "full gate, channel mean", image, report, mean))
    if "residual" in maps:
        size = np.abs(maps["residual"]).mean(axis=-1)
        title = "residual, channel mean of |r|"
        panels.append(partial(_draw_overlay, title, image, report, size))
    if "channel" in maps:
        panels.append(partial(_draw_channels, "channel gates", maps["channel"], top))
    for key in sorted(set(maps) - DRAWN_MAPS):  # a kind of map with no picture of its own yet
        value = maps[key]
        if value.ndim == 1:
            panels.append(partial(_draw_channels, key, value, top))
        else:
            panels.append(partial(_draw_matrix, key, value.reshape(len(value), -1), "", ""))
    figure = Figure(figsize=(5 * len(panels), 4.6), dpi=100, layout="constrained")
    for ax, draw in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        draw(ax)
    h, w, c = report.features
    figure.suptitle(f"{report.name}: {report.type} at {report.position} (features {h}x{w}x{c})")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


def _draw_overlay(title: str, image, report: AttentionMaps, grid: np.ndarray, ax) -> None:
    sampled = grid_to_image(grid, report.input_size, report.transform, image.shape[:2])
    low, high = float(grid.min()), float(grid.max())
    ax.imshow(overlay_image(image, sampled, low, high))
    ax.set_title(f"{title} ({grid.shape[0]}x{grid.shape[1]}; {low:.4g} to {high:.4g})", fontsize=10)
    ax.set_axis_off()


def _draw_matrix(title: str, matrix: np.ndarray, xlabel: str, ylabel: str, ax) -> None:
    shown = ax.imshow(matrix, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.figure.colorbar(shown, ax=ax, fraction=0.05)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title(f"{title} ({matrix.shape[0]}x{matrix.shape[1]})", fontsize=10)


def _draw_channels(title: str, weights: np.ndarray, top: int, ax) -> None:
    order = np.argsort(-weights, kind="stable")
    ranked = weights[order]
    ranks = np.arange(len(ranked))
    ax.fill_between(ranks, ranked, color="tab:blue", alpha=0.3, step="mid")
    ax.plot(ranks, ranked, color="tab:blue", drawstyle="steps-mid")
    shown = min(top, len(ranked))
    ax.plot(ranks[:shown], ranked[:shown], "o", color="tab:red", markersize=3)
    listing = "\n".join(
        f"#{channel}: {ranked[rank]:.4f}" for rank, channel in enumerate(order[:shown])
    )
    ax.text(
        0.98,
        0.97,
        f"top {shown}\n{listing}",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=8,
        family="monospace",
        bbox={"facecolor": "white", "alpha": 0.8, "lw": 0},
    )
    ax.set(xlabel="channels, sorted by weight", ylabel="weight", xlim=(-0.5, len(ranked) - 0.5))
    ax.set_ylim(0, max(1.0, float(ranked.max())) * 1.05)
    ax.set_title(f"{title} ({len(ranked)} channels)", fontsize=10)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in name)


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"expected an RGB uint8 image (height, width, 3), got {image.dtype} {image.shape}"
        )
    return image


def _load(args):
    from attnyolo.data.images import load_image
    from attnyolo.models import load_detector

    # ModelFileError, ImageError: ValueErrors naming the file, which `main` prints in one line
    # and exits 2 on, as every command.
    return load_detector(args.model), load_image(args.image)


def cmd_heatmap(args) -> None:
    model, image = _load(args)
    output = Path(args.output or f"{Path(args.image).stem}_heatmap.png")
    result = objectness_heatmap(
        model, image, letterbox=args.letterbox, resize_filter=args.resize_filter
    )
    print(f"wrote {result.overlay(output)}")


def cmd_attention(args) -> None:
    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    model, image = _load(args)
    output = Path(args.output or f"{Path(args.image).stem}_attention")
    reports = attention_report(
        model,
        image,
        letterbox=args.letterbox,
        resize_filter=args.resize_filter,
        source=Path(args.model).name,
    )
    for path in save_attention_figures(image, reports, output, top=args.top):
        print(f"wrote {path}")


__all__ = [
    "AttentionMaps",
    "HeatmapResult",
    "attention_layers",
    "attention_report",
    "cmd_attention",
    "cmd_heatmap",
    "grid_to_image",
    "head_objectness",
    "objectness_heatmap",
    "overlay_image",
    "save_attention_figures",
    "save_heatmap",
]
