"""Run by test_distribute.py in a fresh process, since devices must be set before the backend
starts: `python distributed_check.py DATA_ROOT OUT_DIR [STRATEGY]`.

1. One SGD step on a batch `[a, b, a, b]` split over two replicas must give the weights that
   one device gives for the same batch: each replica sees `[a, b]`, whose batch-norm statistics
   and mean loss are those of the whole batch, so any error in how the replicas' gradients are
   combined (e.g. summing where they must average) shows as a factor of 2.
2. `attnyolo.engine.train.train` with `distribute` runs an epoch and writes its checkpoint.

Prints one JSON line with what it measured.
"""

import json
import os
import sys

import keras
import numpy as np

backend = keras.backend.backend()
if backend == "tensorflow":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from attnyolo.engine.distribute import distribution_scope, resolve_strategy  # noqa: E402
from attnyolo.engine.train import resolve_config, train  # noqa: E402
from attnyolo.losses import YoloLoss  # noqa: E402
from attnyolo.models import YOLOv4Tiny  # noqa: E402

data_root, out_dir = sys.argv[1], sys.argv[2]
setting = sys.argv[3] if len(sys.argv) > 3 else "true"
setting = True if setting == "true" else setting


def one_step(strategy, weights, x, y):
    with distribution_scope(strategy, [len(x)]) as replicas:
        model = YOLOv4Tiny(3, input_size=64)
        model.set_weights(weights)
        model.set_loss(YoloLoss.from_model(model))
        model.compile(optimizer=keras.optimizers.SGD(0.05), jit_compile=False)
        history = model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
        return replicas, model.get_weights(), history.history["loss"][0]


rng = np.random.default_rng(0)
keras.utils.set_random_seed(0)
weights = YOLOv4Tiny(3, input_size=64).get_weights()
pair = rng.uniform(0, 1, (2, 64, 64, 3)).astype("float32")
x = np.concatenate([pair, pair])
boxes = np.zeros((2, 3, 4), "float32")
boxes[:, 0] = [[8, 10, 40, 44], [20, 4, 60, 30]]
boxes[0, 1] = [1, 1, 63, 63]  # 62 px: positives on both heads
classes = np.full((2, 3), -1, "int32")
classes[:, 0] = [0, 2]
classes[0, 1] = 1
y = {"boxes": np.concatenate([boxes, boxes]), "classes": np.concatenate([classes, classes])}

strategy = resolve_strategy(setting)
try:
    with distribution_scope(strategy, [4, 3]):
        uneven = "accepted"
except ValueError as error:
    uneven = str(error)
_, single, single_loss = one_step(None, weights, x, y)
replicas, spread, spread_loss = one_step(strategy, weights, x, y)
moved = max(float(np.abs(a - w).max()) for a, w in zip(single, weights, strict=True))
difference = max(float(np.abs(a - b).max()) for a, b in zip(single, spread, strict=True))

config = resolve_config(
    data=data_root,
    classes=os.path.join(data_root, "classes.txt"),
    input_size=64,
    epochs=1,
    freeze_train=False,
    batch_size=4,
    optimizer="adam",
    eval_period=1,
    save_period=0,
    train_split="train",
    val_split="val",
    output=out_dir,
    name="run",
    workers=1,
    distribute=setting,
)
run = train(config, verbose=0)
state = json.loads((run / "state.json").read_text())
print(
    json.dumps(
        {
            "backend": backend,
            "strategy": strategy,
            "replicas": replicas,
            "moved": moved,
            "difference": difference,
            "single_loss": single_loss,
            "spread_loss": spread_loss,
            "epochs": state["epoch"],
            "history": state["history"],
            "checkpoint": (run / "weights" / "last.keras").is_file(),
            "uneven": uneven,
        }
    )
)
