"""Security rules that the code base must keep: checkpoints are only ever loaded weights-only. Budget: under 1 s."""

from __future__ import annotations

import ast
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(REPOSITORY / "monai_unlearn").rglob("*.py"), *(REPOSITORY / "bundles").rglob("*.py")])


def torch_load_calls(path: Path) -> list[tuple[int, bool]]:
    """Return (line, has weights_only=True) for each call of torch.load (or a bare load imported from torch)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    imported_load = any(
        isinstance(node, ast.ImportFrom) and node.module == "torch" and any(a.name == "load" for a in node.names)
        for node in ast.walk(tree)
    )
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        is_torch_load = (
            isinstance(function, ast.Attribute)
            and function.attr == "load"
            and isinstance(function.value, ast.Name)
            and function.value.id == "torch"
        ) or (imported_load and isinstance(function, ast.Name) and function.id == "load")
        if is_torch_load:
            safe = any(
                k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                for k in node.keywords
            )
            calls.append((node.lineno, safe))
    return calls


def test_sources_found():
    assert len(SOURCES) > 20, f"expected the package sources, found {len(SOURCES)} files"


def test_every_torch_load_is_weights_only():
    unsafe = [f"{p.relative_to(REPOSITORY)}:{line}" for p in SOURCES for line, safe in torch_load_calls(p) if not safe]
    assert not unsafe, f"torch.load without weights_only=True (pickled code could run): {unsafe}"


def test_checker_detects_unsafe_call(tmp_path: Path):
    sample = tmp_path / "sample.py"
    sample.write_text("import torch\nfrom torch import load\ntorch.load('a')\nload('b', weights_only=False)\n")
    assert torch_load_calls(sample) == [(3, False), (4, False)], "the checker must flag both unsafe calls"
