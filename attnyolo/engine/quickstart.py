"""`attnyolo quickstart`: the whole workflow on the built-in synthetic shapes data, no download.

Generate the data set, train from scratch with `--recipe fast` for a 10-minute budget, evaluate
on its test split with the evaluation defaults, predict a few test images, and say where
everything went.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from attnyolo.data.synthetic import generate_shapes

# The fast recipe (attnyolo/configs/fast.yaml) in a time budget; everything else is its own.
QUICKSTART = {
    "recipe": "fast",
    "eval_period": 0,
    "save_period": 0,
    "val_split": None,
    "train_split": "trainval",
}
MINUTES = 10.0  # the training budget: the whole quickstart takes about 11 minutes


def quickstart(
    output: str | Path = "runs/quickstart",
    images: int = 1000,
    epochs: int | None = None,
    attention: str | None = None,
    seed: int = 0,
    minutes: float = MINUTES,
    colour: str = "class",
) -> dict:
    """Runs the quickstart; returns the paths and the test mAP@0.5.

    Trains with `--recipe fast` for `minutes` (or `epochs`, when given). The default data give
    each class its own colour (`colour="class"`), which a detector reads off one pixel: the
    figure measures finding objects and naming colours. `colour="random"` makes shape the only
    clue, the benchmark's task (bench/bench_time_to_accuracy.py)."""
    from attnyolo.engine.evaluate import evaluate_files
    from attnyolo.engine.predict import predict_images
    from attnyolo.engine.train import resolve_config, train

    output = Path(output)
    start = time.perf_counter()
    folder = "shapes" if colour == "class" else f"shapes_{colour}_colour"
    root = generate_shapes(output / "data" / folder, num_images=images, seed=seed, colour=colour)
    clue = (
        "each class has its own colour, so the class can be read off one pixel"
        if colour == "class"
        else "colours are independent of the class: only the shape tells it"
    )
    print(f"data: {root} ({time.perf_counter() - start:.0f} s); {clue}")
    overrides = dict(
        QUICKSTART, data=str(root), output=str(output), name="train", attention=attention, seed=seed
    )
    if epochs is not None:
        overrides["epochs"] = epochs
    else:
        overrides["time"] = minutes
    run_dir = output / "train"
    with warnings.catch_warnings():
        # The original's advice for real data sets (thousands of steps) does not apply here.
        warnings.filterwarnings("ignore", message=".*training wants more than")
        if (run_dir / "config.yaml").is_file():
            run = train(resume=run_dir)  # an interrupted quickstart continues where it stopped
        else:
            run = train(resolve_config(**overrides))
    model_path = run / "weights" / "last.keras"
    evaluation = evaluate_files(
        root, model=model_path, split="test", output_dir=output / "evaluation"
    )
    test_images = sorted((root / "JPEGImages").glob("*.jpg"))
    test_ids = set((root / "ImageSets" / "Main" / "test.txt").read_text().split())
    picked = [p for p in test_images if p.stem in test_ids][:6]
    predict_images(model_path, picked, output / "predictions")
    elapsed = time.perf_counter() - start
    result = {
        "data": str(root),
        "run": str(run),
        "model": str(model_path),
        "evaluation": str(output / "evaluation"),
        "predictions": str(output / "predictions"),
        "test_map50": evaluation.map50,
        "seconds": elapsed,
    }
    return result
