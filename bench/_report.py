"""Writing one benchmark's section of docs/benchmarks.md without touching the others."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), for the machine line of a benchmark."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_section(path: str | Path, heading: str, text: str) -> None:
    """Replaces the `## heading` section of the Markdown file at `path` with `text` (which starts
    with that heading), or appends it; other sections stay as they are."""
    path = Path(path)
    existing = path.read_text() if path.exists() else "# Benchmarks\n"
    sections = existing.split("\n## ")
    head, rest = sections[0], sections[1:]
    title = heading.removeprefix("## ").strip()
    body = text.strip().removeprefix("## ")
    replaced = False
    for i, section in enumerate(rest):
        if section.split("\n", 1)[0].strip() == title:
            rest[i] = body
            replaced = True
    if not replaced:
        rest.append(body)
    out = "\n\n## ".join([head.rstrip(), *(s.strip() for s in rest)]) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(out)
    tmp.replace(path)
