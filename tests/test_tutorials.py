"""Execute every tutorial notebook in its small setting, so that the tutorials keep working as the package changes.

Each notebook runs in a fresh ``python3`` kernel with ``tutorials/`` as its working directory,
``MONAI_UNLEARN_TUTORIAL_SMALL=1`` and a temporary work folder. A failing cell fails the test with that cell's
source and error.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import data_dir

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPOSITORY = Path(__file__).resolve().parents[1]
TUTORIALS = REPOSITORY / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
# Every example bundle: a tutorial must work on a copy of whichever bundle it uses.
REPOSITORY_BUNDLE = REPOSITORY / "bundles"
# IPython colours its tracebacks with ANSI escape sequences, which make pytest's failure report hard to read.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

# Maximum run time of one cell. The longest cell trains the bundle, which takes under a minute in the small setting.
CELL_TIMEOUT_SECONDS = 600


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Return the size and modification time of every file under ``folder``, by relative path."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
        if path.is_file()
    }


def test_tutorials_folder_has_notebooks():
    assert NOTEBOOKS, f"no notebooks found under {TUTORIALS}"


@pytest.mark.slow
@pytest.mark.parametrize("notebook_path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_small(notebook_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # The kernel inherits this process's environment.
    monkeypatch.setenv("MONAI_UNLEARN_TUTORIAL_SMALL", "1")
    monkeypatch.setenv("MONAI_UNLEARN_TUTORIAL_WORK_DIR", str(tmp_path))
    monkeypatch.setenv("MONAI_UNLEARN_DATA", str(data_dir()))
    # One torch thread per process, as in the other bundle CLI tests, to keep run times stable on small CI machines.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    notebook = nbformat.read(notebook_path, as_version=4)
    bundle_before = snapshot(REPOSITORY_BUNDLE)

    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_SECONDS,
        resources={"metadata": {"path": str(TUTORIALS)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        message = ANSI_ESCAPE.sub("", str(error))
        pytest.fail(f"{notebook_path.name} failed in a cell:\n{message}", pytrace=False)

    bundle_after = snapshot(REPOSITORY_BUNDLE)
    all_paths = bundle_before.keys() | bundle_after.keys()
    changed = sorted(path for path in all_paths if bundle_before.get(path) != bundle_after.get(path))
    assert not changed, (
        f"{notebook_path.name} changed {len(changed)} files under {REPOSITORY_BUNDLE}, for example {changed[:5]}. "
        "Tutorials must work on a copy of the bundle."
    )
    assert any(tmp_path.iterdir()), f"{notebook_path.name} wrote nothing into its work folder {tmp_path}"
