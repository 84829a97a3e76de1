"""Test helper: trains (or ablates) in this process and SIGKILLs it at a chosen moment.

    python tests/reliability/kill_driver.py SPEC.json

SPEC: `{"config": {...} | null, "resume": RUN | null, "ablate": {...} | null,
"kill": [MOMENT, N] | null}`. MOMENT is where the N-th such event kills the process:
`batch` (after a training batch), `write:NAME` (half-way into writing a file whose name starts
with NAME: the temporary file holds half its bytes, nothing is renamed), `validate` (as a
validation starts), `recalibrate` (as a batch-norm re-estimation starts). Exit -9 when killed.
"""

import contextlib
import json
import os
import signal
import sys
from pathlib import Path


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    import attnyolo.models.saving as saving
    import attnyolo.utils as utils
    from attnyolo.engine import train as train_module

    kill = spec.get("kill")
    count = [0]

    def hit() -> None:
        count[0] += 1
        if count[0] == kill[1]:
            os.kill(os.getpid(), signal.SIGKILL)

    if kill:
        moment = kill[0]
        if moment == "batch":
            original = train_module.RunCallback.on_train_batch_end

            def batch_end(self, batch, logs=None):
                original(self, batch, logs)
                hit()

            train_module.RunCallback.on_train_batch_end = batch_end
        elif moment.startswith("write:"):
            prefix = moment.split(":", 1)[1]
            real = utils.atomic_path

            @contextlib.contextmanager
            def atomic_path(path):
                with real(path) as tmp:
                    yield tmp
                    if Path(path).name.startswith(prefix):
                        count[0] += 1
                        if count[0] == kill[1]:
                            data = tmp.read_bytes()
                            tmp.write_bytes(data[: len(data) // 2])  # the write half done
                            os.kill(os.getpid(), signal.SIGKILL)

            for module in (utils, saving, train_module):
                module.atomic_path = atomic_path
        elif moment == "validate":
            original_validate = train_module.RunCallback._validate

            def validate(self, model):
                hit()
                return original_validate(self, model)

            train_module.RunCallback._validate = validate
        elif moment == "recalibrate":
            original_recalibrate = train_module.recalibrate_batchnorm

            def recalibrate(*args, **kwargs):
                hit()
                return original_recalibrate(*args, **kwargs)

            train_module.recalibrate_batchnorm = recalibrate
        else:
            raise SystemExit(f"unknown moment {moment!r}")
    if spec.get("ablate"):
        from attnyolo.engine.ablate import ablate

        ablate(**spec["ablate"])
    elif spec.get("resume"):
        train_module.train(resume=spec["resume"], verbose=0)
    else:
        train_module.train(train_module.resolve_config(**spec["config"]), verbose=0)


if __name__ == "__main__":
    main()
