"""The peer side of the time-to-accuracy benchmark: Ultralytics YOLOv8n in a venv of its own.

Standard library only: the benchmark imports this from attnyolo's venv, and everything that
needs Ultralytics or PyTorch runs in the peer venv through ``peer_yolov8.py``.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_PEER_VENV = Path.home() / ".cache" / "attnyolo-bench" / "ultralytics-venv"
PEER_SCRIPT = Path(__file__).resolve().with_name("peer_yolov8.py")
# The check that a venv's Ultralytics works: torchvision's NMS is the op that fails to load when
# torch and torchvision do not match.
_CHECK = "import ultralytics, torch, torchvision; torchvision.ops.nms"


class PeerError(RuntimeError):
    """Setting up or running the peer failed; the message names the log to read."""


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def config_dir(venv: Path) -> Path:
    """The folder given to Ultralytics as ``YOLO_CONFIG_DIR`` (it adds ``Ultralytics/``)."""
    return venv / "ultralytics-config"


def settings_dir(venv: Path) -> Path:
    """Where Ultralytics keeps its settings and looks for its fonts."""
    return config_dir(venv) / "Ultralytics"


def peer_env(venv: Path, threads: int = 2) -> dict[str, str]:
    """The peer's environment: offline, its settings under the venv, ``threads`` threads."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(
        {
            "YOLO_CONFIG_DIR": str(config_dir(venv)),
            "YOLO_OFFLINE": "1",  # is_online() answers False without a DNS look-up
            "YOLO_AUTOINSTALL": "0",  # check_requirements never runs pip
            "YOLO_VERBOSE": "1",
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
            "OPENBLAS_NUM_THREADS": str(threads),
            "HF_HUB_OFFLINE": "1",
            "WANDB_DISABLED": "true",
            "WANDB_MODE": "disabled",
            "MPLBACKEND": "Agg",
            "PYTHONUNBUFFERED": "1",
            "PYTHONNOUSERSITE": "1",
        }
    )
    return env


def _works(python: Path, venv: Path) -> bool:
    if not python.exists():
        return False
    result = subprocess.run(
        [str(python), "-c", _CHECK],
        env=peer_env(venv),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return result.returncode == 0


def _find_font(venv: Path) -> Path | None:
    """A TrueType font to stand in for Ultralytics' ``Arial.ttf``: DejaVu Sans from matplotlib."""
    patterns = [
        # matplotlib, which Ultralytics depends on, in the peer venv, then in this one.
        str(venv / "lib" / "python*" / "site-packages" / "matplotlib" / "mpl-data" / "fonts"),
        str(Path(sys.prefix) / "lib" / "python*" / "site-packages" / "matplotlib" / "mpl-data"),
    ]
    for pattern in patterns:
        for root in sorted(glob.glob(pattern)):
            hits = sorted(Path(root).rglob("DejaVuSans.ttf"))
            if hits:
                return hits[0]
    for root in ("/usr/share/fonts", "/usr/local/share/fonts"):
        hits = sorted(Path(root).rglob("*.ttf")) if Path(root).is_dir() else []
        if hits:
            return hits[0]
    return None


def _write_settings(venv: Path, font: Path) -> None:
    folder = settings_dir(venv)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        shutil.copyfile(font, folder / name)


def ensure_peer_venv(path: Path = DEFAULT_PEER_VENV) -> Path:
    """Make ``path`` a venv with a working Ultralytics that runs offline; return its python.

    A venv that already passes the import check is kept as it is (its fonts are refreshed); one
    that fails it is made anew, so that pip chooses torch and torchvision together. Otherwise the
    venv is created and ``pip install ultralytics`` run in it, its output going to
    ``path/install.log``.
    """
    venv = Path(path).expanduser().resolve()
    python = _venv_python(venv)
    if _works(python, venv):
        print(f"peer: ultralytics venv ready at {venv}", flush=True)
    else:
        if (venv / "pyvenv.cfg").exists():
            if venv == Path(sys.prefix).resolve():
                raise PeerError(f"{venv} is the running venv, not one for the peer")
            print(f"peer: {venv} has no working ultralytics; making it anew", flush=True)
            shutil.rmtree(venv)
        venv.mkdir(parents=True, exist_ok=True)
        log = venv / "install.log"
        print(f"peer: installing ultralytics into {venv} (log: {log})", flush=True)
        start = time.monotonic()
        # Nothing of attnyolo's venv may leak in: pip would take its torch as already installed.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env["PYTHONNOUSERSITE"] = "1"
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "ultralytics"],
        ]
        with open(log, "w") as out:
            for step in steps:
                out.write(f"$ {' '.join(step)}\n")
                out.flush()
                result = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, env=env)
                if result.returncode != 0:
                    raise PeerError(
                        f"peer install failed (exit {result.returncode}) at "
                        f"{' '.join(step[:4])}...; see {log}"
                    )
        if not _works(python, venv):
            raise PeerError(f"ultralytics installed in {venv} but does not import; see {log}")
        print(f"peer: installed in {time.monotonic() - start:.0f} s", flush=True)
    font = _find_font(venv)
    if font is None:
        raise PeerError("no TrueType font found to stand in for Ultralytics' Arial.ttf")
    _write_settings(venv, font)
    print(f"peer: fonts from {font} in {settings_dir(venv)}", flush=True)
    return python


def run_peer(
    python: Path,
    data_yaml: Path,
    test_images: list[Path],
    out_dir: Path,
    minutes: float,
    checkpoint_minutes: float = 2,
    imgsz: int = 320,
    batch: int = 16,
    seed: int = 0,
    threads: int = 2,
    workers: int = 2,
    deterministic: bool = False,
) -> dict:
    """Train YOLOv8n from scratch for ``minutes`` in the peer venv; return its ``peer.json``.

    ``python`` is the peer venv's interpreter (from :func:`ensure_peer_venv`). Its output goes to
    ``out_dir/peer.log``; checkpoints, detections and the summary to ``out_dir`` (see
    ``peer_yolov8.py``). ``workers`` loader processes (Ultralytics would force 0 on the CPU) and
    ``deterministic`` kernels or not: by default as fast as a careful user would run it.
    """
    python = Path(python)  # not resolved: the venv's python is a link to the base interpreter
    venv = python.parent.parent
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    summary_path = out_dir / "peer.json"
    if summary_path.exists():
        summary_path.unlink()  # never return an earlier run's summary
    test_list = out_dir / "test_images.txt"
    test_list.write_text("".join(f"{Path(p).resolve()}\n" for p in test_images))
    log = out_dir / "peer.log"
    command = [
        str(python),
        str(PEER_SCRIPT),
        "--data",
        str(Path(data_yaml).resolve()),
        "--test-list",
        str(test_list),
        "--out",
        str(out_dir),
        "--minutes",
        str(minutes),
        "--checkpoint-minutes",
        str(checkpoint_minutes),
        "--imgsz",
        str(imgsz),
        "--batch",
        str(batch),
        "--seed",
        str(seed),
        "--threads",
        str(threads),
        "--workers",
        str(workers),
        *(["--deterministic"] if deterministic else []),
    ]
    print(
        f"peer: training YOLOv8n for {minutes:g} min on {threads} threads (log: {log})",
        flush=True,
    )
    start = time.monotonic()
    with open(log, "w") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        result = subprocess.run(
            command,
            cwd=out_dir,
            env=peer_env(venv, threads),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if result.returncode != 0:
        raise PeerError(f"peer run failed (exit {result.returncode}); see {log}")
    if not summary_path.exists():
        raise PeerError(f"peer run wrote no {summary_path.name}; see {log}")
    summary = json.loads(summary_path.read_text())
    cpu_use = summary.get("cpu_use")
    if cpu_use is not None and cpu_use < 0.85:
        print(
            f"peer: WARNING: training got {cpu_use:.0%} of {threads} threads' CPU time: the cores "
            "were shared with other work, and its speed is not YOLOv8n's",
            flush=True,
        )
    print(
        f"peer: done in {time.monotonic() - start:.0f} s: {summary['train_minutes']:.2f} min "
        f"training, {summary['images_per_second']} images/s",
        flush=True,
    )
    return summary


def predict_again(
    python: Path,
    out_dir: Path,
    test_images: list[Path],
    imgsz: int = 320,
    threads: int = 2,
    data_yaml: Path | None = None,
) -> dict:
    """Predicts the test images again with the checkpoints of an earlier `run_peer` in
    ``out_dir`` (no training), as ``peer_yolov8.py`` now predicts, and with ``data_yaml`` runs
    Ultralytics' validator on the last checkpoint again; returns the updated ``peer.json``."""
    python = Path(python)
    out_dir = Path(out_dir).resolve()
    summary_path = out_dir / "peer.json"
    summary = json.loads(summary_path.read_text())
    test_list = out_dir / "test_images.txt"
    test_list.write_text("".join(f"{Path(p).resolve()}\n" for p in test_images))
    log = out_dir / "predict_again.log"
    command = [
        str(python), str(PEER_SCRIPT), "--predict-only",
        "--data", str(Path(data_yaml).resolve()) if data_yaml else "unused",
        "--test-list", str(test_list), "--out", str(out_dir),
        "--minutes", str(summary["budget_minutes"]), "--imgsz", str(imgsz),
        "--threads", str(threads),
    ]  # fmt: skip
    with open(log, "w") as out:
        result = subprocess.run(
            command,
            cwd=out_dir,
            env=peer_env(python.parent.parent, threads),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if result.returncode != 0:
        raise PeerError(f"peer prediction failed (exit {result.returncode}); see {log}")
    return json.loads(summary_path.read_text())
