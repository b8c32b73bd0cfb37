"""The folder maps name every module (issue 31: README's Layout lacked five): README's "Layout" block
names each library module (as `name.py`, or by its name in a package's line), docs/ARCHITECTURE.md's
"Folder map" each module of the library and the prior as `name.py`. The benchmarks are listed by
their own table (README, "Benchmarks"), and `__init__.py` files are their folders. Document text:
out of the default run (tests/documents/test_document_text.py says why)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def code_block_after(document: str, heading: str) -> str:
    """The first ``` block after `heading` in docs file `document` (relative to the root)."""
    text = (ROOT / document).read_text()
    assert heading in text, f"{document} has no {heading!r}"
    return text.split(heading, 1)[1].split("```")[1]


def modules(*packages: str) -> list[Path]:
    return [
        path.relative_to(ROOT)
        for package in packages
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "__init__.py" and "benchmarks" not in path.parts
    ]


def named(block: str, stem: str, suffix: str) -> bool:
    return re.search(rf"(?<![\w.-]){re.escape(stem)}{suffix}(?![\w-])", block) is not None


@pytest.mark.parametrize(
    "document, heading, packages, suffix",
    [
        ("README.md", "## Layout", ("mothernet_jax",), r"(?:\.py)?"),
        ("docs/ARCHITECTURE.md", "## Folder map", ("mothernet_jax", "priors"), r"\.py"),
    ],
    ids=["README", "ARCHITECTURE"],
)
def test_the_folder_map_names_every_module(document, heading, packages, suffix):
    block = code_block_after(document, heading)
    found = modules(*packages)
    assert len(found) > 40  # the walk sees the library
    missing = [str(path) for path in found if not named(block, path.stem, suffix)]
    assert not missing, f"{document} ({heading}) does not name: {', '.join(missing)}"
