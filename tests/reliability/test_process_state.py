"""What the library leaves alone in the process that imports it: matplotlib's backend and
pyplot's open figures."""

import subprocess
import sys


def test_plotting_keeps_the_matplotlib_backend_and_opens_no_pyplot_figure(tmp_path):
    # A notebook's backend (inline, say) must survive `import attnyolo...` and a plot: before,
    # plots.py and explain.py switched it to Agg at import. "svg" stands in for the notebook's.
    code = f"""
import matplotlib
matplotlib.use("svg")
import attnyolo.engine.ablate, attnyolo.engine.anchors, attnyolo.engine.explain
import attnyolo.engine.train
from attnyolo.engine.plots import plot_pr_curve
plot_pr_curve([0.0, 0.5, 1.0], [1.0, 0.8, 0.4], 0.7, "cat", {str(tmp_path / "pr.png")!r})
import matplotlib.pyplot as plt  # Keras imports pyplot itself; it must hold no figure of ours
print(matplotlib.get_backend(), len(plt.get_fignums()))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    backend, figures = done.stdout.split()[-2:]
    assert (backend, figures) == ("svg", "0")
    assert (tmp_path / "pr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
