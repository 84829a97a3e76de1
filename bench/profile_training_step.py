"""Where one training step of `--recipe fast` goes: loader, forward, backward, optimizer update and
the per-batch callback work, at 320x320 on the shapes set (colour independent of class), for
batch 8 and 16, with the step compiled by XLA or not and in float32 or mixed bfloat16.

On TensorFlow each part is its own compiled function over batches loaded beforehand (on JAX
or PyTorch, `KERAS_BACKEND=jax`, only Keras' step, the callback, the average and the loader):

- forward: the model (training mode) and the loss;
- forward + backward: the same under a gradient tape, gradients returned (backward = the
  difference);
- optimizer: `optimizer.apply` of fixed gradients (AdamW, decoupled decay, as the recipe);
- step: Keras' own compiled train step (`train_on_batch`), what `fit` runs; the parts above
  should add up to about this;
- callback: what `RunCallback` does around each batch in Python: the learning rate computed and
  assigned and the clock read; ema: one update of the weight average (6 M weights read out of
  the framework), which the recipe does every `ema_every` batches;
- loader: one batch built by `DetectionSequence` in this thread (the recipe's augmentation), and
  `fit`'s images/s over real epochs with its loader threads, which share the cores with the step.

    python bench/profile_training_step.py [--batches 8 16] [--steps 10] [--variants xla,fp32 ...]

Writes the section "Training step profile" of docs/benchmarks.md (or `--output`), replacing the
section of the same `--label` ("before", "after").
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from attnyolo.data.datasets import load_dataset  # noqa: E402
from attnyolo.data.pipeline import DetectionSequence  # noqa: E402
from attnyolo.data.synthetic import generate_shapes  # noqa: E402
from attnyolo.engine import train as training  # noqa: E402
from attnyolo.engine.config import resolve_config  # noqa: E402
from attnyolo.engine.fps import time_calls  # noqa: E402
from attnyolo.engine.schedule import TimeBudget, WeightAverage, lr_at_progress  # noqa: E402
from attnyolo.models.flops import count_flops  # noqa: E402

try:
    from _report import cpu_name, write_section  # run as `python bench/profile_training_step.py`
except ImportError:
    from bench._report import cpu_name, write_section

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Training step profile, 320x320, --recipe fast"


def timed(function, repeats: int) -> float:
    """Median seconds of `function()` over `repeats` calls, after two warm-up calls."""
    return float(np.median(time_calls(function, repeats, warmup=2)))


def _sync(value) -> None:
    """Waits for a result (TensorFlow runs eagerly-called functions synchronously on the CPU,
    but a value read makes sure)."""
    keras.ops.convert_to_numpy(keras.tree.flatten(value)[0])


def _tensorflow_parts(model, loss, optimizer, batch, jit: bool, steps: int) -> dict:
    """Forward, backward and the optimizer update timed apart, and all three in one function."""
    import tensorflow as tf

    x0, y0 = batch
    x0 = tf.constant(x0)
    boxes0, classes0 = tf.constant(y0["boxes"]), tf.constant(y0["classes"])
    variables = model.trainable_variables

    @tf.function(jit_compile=jit)
    def forward(x, boxes, classes):
        total, _ = loss(boxes, classes, model(x, training=True))
        return total

    @tf.function(jit_compile=jit)
    def forward_backward(x, boxes, classes):
        with tf.GradientTape() as tape:
            total, _ = loss(boxes, classes, model(x, training=True))
            scaled = optimizer.scale_loss(total)
        return total, tape.gradient(scaled, variables)

    _, grads = forward_backward(x0, boxes0, classes0)
    grads = [tf.identity(g) for g in grads]
    if not optimizer.built:
        optimizer.build(variables)

    @tf.function(jit_compile=jit)
    def update(grads):
        optimizer.apply(grads, variables)
        return optimizer.iterations

    @tf.function(jit_compile=jit)
    def own_step(x, boxes, classes):
        with tf.GradientTape() as tape:
            total, _ = loss(boxes, classes, model(x, training=True))
            scaled = optimizer.scale_loss(total)
        optimizer.apply(tape.gradient(scaled, variables), variables)
        return total

    times = {
        "forward": timed(lambda: _sync(forward(x0, boxes0, classes0)), steps),
        "forward+backward": timed(lambda: _sync(forward_backward(x0, boxes0, classes0)), steps),
        "optimizer": timed(lambda: _sync(update(grads)), steps),
        "own step": timed(lambda: _sync(own_step(x0, boxes0, classes0)), steps),
    }
    times["backward"] = times["forward+backward"] - times["forward"]
    return times


def profile_variant(config, dataset, batch: int, steps: int, jit: bool, policy: str) -> dict:
    every = config["ema_every"] if config["ema"] else float("inf")

    keras.mixed_precision.set_dtype_policy(policy)
    try:
        config = {**config, "batch_size": batch}
        model = training.build_model(config, dataset.class_names)
        training.init_head_priors(model)
        loss = training.loss_for(config, model)
        model.set_loss(loss)
        lr, _ = training.learning_rates(config, batch)
        optimizer = training.make_optimizer(config, model, lr)
        model.compile(optimizer=optimizer, jit_compile=jit)
        sequence = DetectionSequence(
            dataset,
            model.input_size,
            batch,
            train=True,
            mosaic=config["mosaic"],
            mixup=config["mixup"],
            seed=0,
            scale=tuple(config["scale"]),
            hsv=tuple(config["hsv"]),
            max_boxes=training.max_boxes_for(config, dataset),
            workers=1,
        )
        batches = [sequence[i] for i in range(4)]
        state = {"i": 0}

        def step():
            x, y = batches[state["i"] % len(batches)]
            state["i"] += 1
            return model.train_on_batch(x, y)

        times = {"step": timed(step, steps)}
        if keras.backend.backend() == "tensorflow":
            times.update(_tensorflow_parts(model, loss, optimizer, batches[0], jit, steps))

        # The callback's per-batch work, as RunCallback does it.
        budget = TimeBudget(10.0)
        budget.resume()
        ema = WeightAverage(model, 0.9999, 2000.0)

        def callback():
            model.optimizer.learning_rate.assign(lr_at_progress(budget.progress(), lr, lr * 0.01))
            budget.expired()

        times["callback"] = timed(callback, steps)
        times["ema"] = timed(lambda: ema.update(model), steps)
        times["per batch"] = times["step"] + times["callback"] + times["ema"] / every
        times["loader (1 thread)"] = timed(lambda: sequence[state["i"] % len(sequence)], steps)
        return times
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--steps", type=int, default=10, help="timed calls per part")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["xla,float32", "noxla,float32", "xla,mixed_bfloat16", "noxla,mixed_bfloat16"],
        help="jit (xla|noxla) and dtype policy pairs",
    )
    parser.add_argument(
        "--ema-every", type=int, help="batches per weight-average update (default: the recipe's)"
    )
    parser.add_argument("--label", default="now")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = generate_shapes(Path(tmp) / "shapes", num_images=200, colour="random")
        extra = {} if args.ema_every is None else {"ema_every": args.ema_every}
        config = resolve_config(recipe="fast", data=str(root), train_split="train", **extra)
        dataset = load_dataset(str(root), "train")
        model = training.build_model(config, dataset.class_names)
        gflops = count_flops(model) / 1e9
        rows = []
        for variant in args.variants:
            jit_name, policy = variant.split(",")
            for batch in args.batches:
                times = profile_variant(
                    config, dataset, batch, args.steps, jit_name == "xla", policy
                )
                rows.append((variant, batch, times))
                print(variant, batch, {k: round(v * 1000, 1) for k, v in times.items()})
    parts = [
        "loader (1 thread)",
        "forward",
        "backward",
        "optimizer",
        "step",
        "own step",
        "callback",
        "ema",
        "per batch",
    ]
    lines = [
        f"{HEADING} ({args.label})",
        "",
        f"`python bench/profile_training_step.py --label {args.label}` on {cpu_name()} "
        f"({os.cpu_count()} cores), Keras backend `{keras.backend.backend()}`, "
        f"{time.strftime('%Y-%m-%d')}; the model {gflops:.2f} GFLOPs per image at 320 (6 "
        "classes). ms per batch, the median of "
        f"{args.steps} calls after 2 warm-up calls. step: Keras' compiled train step "
        "(`train_on_batch`, what `fit` runs); forward, backward and optimizer: the same work in "
        "separate compiled functions; callback: RunCallback's Python work per batch (learning "
        f"rate, clock); ema: one update of the weight average, done every {config['ema_every']} "
        "batches (`ema_every`); per batch: step + callback + ema / ema_every; loader: one batch "
        "with the recipe's augmentation in one thread (in `fit` its threads share the cores "
        "with the step). img/s = batch / per batch.",
        "",
        "| variant | batch | " + " | ".join(parts) + " | img/s |",
        "|---|---:|" + "---:|" * (len(parts) + 1),
    ]
    for variant, batch, times in rows:
        cells = " | ".join(f"{times[p] * 1000:.1f}" if p in times else "-" for p in parts)
        total = times["per batch"]
        lines.append(f"| {variant} | {batch} | {cells} | {batch / total:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    write_section(args.output, f"{HEADING} ({args.label})", text)


if __name__ == "__main__":
    main()
