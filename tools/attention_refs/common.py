"""What a reference is, and how an authors' module is loaded from a git repository on disk.

The reference code is never copied into this project: `load_repo_module` reads the file from the
repository given on the command line (a git directory, e.g. the library's
`/work/.mirror/<owner>+<name>/repo`, or a checkout), imports it from a temporary directory, and
reports the commit, which the fixture records.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Reference:
    """How to build the reference module for `channels` channels.

    `build(channels, repos)` returns `(module, source)`: a torch module (eval mode is set by the
    driver) and the text that names it (`"timm 1.0.31 CecaModule"` or
    `"github owner/name@<commit> path/in/repo.py ClassName"`). `options` are the keyword
    arguments of our layer that match the reference's configuration (stored in the fixture and
    passed to `get_attention` by the test). `repo` names the repository `build` needs
    (`owner/name`, given as `--repo owner/name=PATH`), or None.
    """

    build: Callable[[int, dict[str, Path]], tuple[Any, str]]
    options: dict[str, Any] = field(default_factory=dict)
    repo: str | None = None
    channels: tuple[int, ...] = (16, 32)
    # The input's (height, width); square for references that only work on square grids.
    grid: tuple[int, int] = (7, 5)


def _git(repo: Path, *args: str) -> str:
    git_dir = repo if (repo / "HEAD").exists() and not (repo / ".git").exists() else repo / ".git"
    return subprocess.run(
        ["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True, text=True
    ).stdout


def repo_commit(repo: Path) -> str:
    return _git(repo, "rev-parse", "HEAD").strip()


def load_repo_module(
    repos: dict[str, Path], repo: str, path: str, stubs: tuple[str, ...] = ()
) -> tuple[types.ModuleType, str]:
    """Imports `path` (a .py file at the repository's HEAD) and returns it with
    `"github <repo>@<commit> <path>"`.

    `stubs` are modules the file imports but the reference class does not use (e.g. a
    framework's registry, `mmrotate.models.builder` for `from ..builder import X` in
    `mmrotate/models/backbones/x.py`); each is replaced by an empty module whose attributes are
    no-op decorators, so that the file imports without the framework. Modules that are
    installed (torch, timm) are imported as they are.
    """
    if repo not in repos:
        raise SystemExit(f"{repo} is needed: pass --repo {repo}=PATH (a git directory)")
    root = repos[repo]
    source = _git(root, "show", f"HEAD:{path}")
    for name in stubs:
        _install_stub(name)
    # Imported under its dotted path in the repository (parents stubbed where missing), so that
    # relative imports (`from ..builder import X`) resolve to modules named in `stubs`.
    module_name = path.removesuffix(".py").replace("/", ".")
    parent = module_name.rpartition(".")[0]
    if parent:
        _install_stub(parent)
    folder = Path(tempfile.mkdtemp(prefix="attn_ref_"))
    file = folder / Path(path).name
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module, f"github {repo}@{repo_commit(root)} {path}"


class _Stub(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _StubObject()


class _StubObject:
    """Any attribute, call or decorator use: a decorator returns what it decorates."""

    def __getattr__(self, name):
        return _StubObject()

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and not kwargs and (isinstance(args[0], type) or callable(args[0])):
            return args[0]
        return _StubObject()


def _install_stub(name: str) -> None:
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        sub = ".".join(parts[:i])
        if sub not in sys.modules:
            sys.modules[sub] = _Stub(sub)
            sys.modules[sub].__path__ = []
