"""Execute the segmentation tutorial notebook at its small setting, as CI does.

The notebook trains the hippocampus bundle on 24 real cases, retires the posterior label, trains a retrain oracle and
forgets a deletion request, all through the real bundle CLI, in a temporary copy of the bundle. Budget of this file:
about 45 s on 2 CPU cores with one torch thread.
"""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPOSITORY, data_dir

NOTEBOOK = REPOSITORY / "tutorials" / "02_segmentation_unlearning.ipynb"


def test_segmentation_tutorial_runs(tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MONAI_UNLEARN_TUTORIAL_SMALL", "1")
    monkeypatch.setenv("MONAI_UNLEARN_TUTORIAL_WORK_DIR", str(tmp_path))
    monkeypatch.setenv("MONAI_UNLEARN_DATA", str(data_dir()))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    repository_bundle = REPOSITORY / "bundles" / "hippocampus_segmentation"
    before = snapshot(repository_bundle)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )

    client.execute()

    texts = []
    for cell in notebook.cells:
        if cell.cell_type == "code":
            texts += [output.get("text", "") for output in cell.get("outputs", [])]
    outputs = "".join(texts)
    assert "setting: small" in outputs, "the notebook should run its small setting"
    assert "posterior voxels predicted       0" in outputs, "the revised model should predict no posterior voxel"
    assert "case-level MIA AUC" in outputs, "the notebook should print the report's comparison table"
    assert (tmp_path / "hippocampus_segmentation" / "models" / "oracle_cases" / "model.pt").is_file(), (
        "the notebook should train the retrain oracle in its bundle copy"
    )
    assert snapshot(repository_bundle) == before, "the notebook must not write into the repository's bundle folder"


def snapshot(folder) -> dict[str, int]:
    """Return the modification time of every file under ``folder``, by relative path."""
    return {str(path.relative_to(folder)): path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}
