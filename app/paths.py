"""Which folders the app may read, and how paths are shown: relative names, never absolute server
paths (in the page's config, in menus, in messages)."""

from __future__ import annotations

from pathlib import Path

from dde.limits import shown
from dde.toy import ASSETS

ROOT = Path(__file__).resolve().parents[1]


class Paths:
    """The allowed roots: the output folder (shown as ``out/``), the repository's ``assets/`` and
    ``runs/`` (shown relative to the repository), and each ``--allow`` folder (``allowed-<k>/``)."""

    def __init__(self, out: Path, allow: list[str] | None = None) -> None:
        self.out = Path(out).resolve()
        self.roots: dict[str, Path] = {"out": self.out, "assets": ASSETS, "runs": ROOT / "runs"}
        for k, folder in enumerate(allow or []):
            self.roots[f"allowed-{k + 1}"] = Path(folder).resolve()

    def show(self, path: str | Path) -> str:
        """A path as the UI shows it: ``<root name>/<relative part>``."""
        path = Path(path).resolve()
        for name, root in self.roots.items():
            if path.is_relative_to(root.resolve()):
                rel = path.relative_to(root.resolve()).as_posix()
                return name if rel == "." else f"{name}/{rel}"
        return path.name

    def resolve(self, text) -> Path:
        """What a user typed (a shown path, or a path inside an allowed root) as an existing path,
        else ValueError (outside the roots, missing, or not text)."""
        if not isinstance(text, str):
            raise ValueError(f"a path must be given as text, got {shown(text)}")
        text = text.strip()
        if not text:
            raise ValueError("no path given")
        if "\x00" in text or len(text) > 4096:
            raise ValueError("that is not a usable path")
        if "://" in text:
            raise ValueError("URLs are not accepted; give a path inside the app's folders")
        head, _, rest = text.partition("/")
        if head in self.roots:
            path = self.roots[head] / rest
        else:
            path = Path(text).expanduser()
            path = path if path.is_absolute() else ROOT / path
        path = path.resolve()
        if not any(path.is_relative_to(root.resolve()) for root in self.roots.values()):
            raise ValueError(f"{text!r} is outside the folders this app may read ({', '.join(self.roots)}); "
                             "start the app with --allow <folder> to add one")
        if not path.exists():
            raise ValueError(f"{text!r} does not exist")
        return path
