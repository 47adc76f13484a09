"""Bad input to a revision: each case gets a clear error that names the value and the fix, and loses nothing.

Every test revises a fresh copy of the trained flat-layout test bundle with one thing wrong, checks the error
message, and checks that the original checkpoint and the metadata are unchanged (SHA-256). Most cases fail in the
preflight checks or before them. The cases that only show during training (a batch without forget flags, NaN or
infinite images, a full disk when the revised weights are written) run the real bundle workflow in this process.
Budget: about 40 s on 2 cores (the trained bundle is shared).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import monai_unlearn.utils
from conftest import copy_trained_bundle, data_dir, make_modality_network
from monai_unlearn.bundle import BundleLayoutError, ForgetRequest, PreflightError, build_overlay, revise
from monai_unlearn.bundle import detect_layout, find_training_configs, load_bundle_config, write_overlay
from monai_unlearn.utils import sha256_file

REQUEST = ForgetRequest(rule="label in {1}", method="psg_retain", method_kwargs={"epsilon": 0.1, "box": [0.0, 1.0]})


@dataclass
class Snapshot:
    """Digests of the files a failed revision must not change."""

    checkpoint: str
    metadata: str


class Bundle:
    """A fresh copy of the trained flat bundle, with helpers to break one thing."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.checkpoint = folder / "models" / "model.pt"
        self.metadata = folder / "configs" / "metadata.json"
        self.snapshot = Snapshot(sha256_file(self.checkpoint), sha256_file(self.metadata))

    def take_snapshot(self) -> None:
        self.snapshot = Snapshot(sha256_file(self.checkpoint), sha256_file(self.metadata))

    def assert_unchanged(self) -> None:
        assert self.checkpoint.is_file(), "the original checkpoint must still exist"
        assert sha256_file(self.checkpoint) == self.snapshot.checkpoint, "the original checkpoint was modified"
        assert sha256_file(self.metadata) == self.snapshot.metadata, "metadata.json was modified by a failed revision"
        leftovers = [p.name for p in (self.folder / "models").iterdir() if p.name.endswith(".tmp")]
        assert not leftovers, f"temporary files were left behind: {leftovers}"

    def edit_datalist(self, edit: Callable[[dict, Path], None]) -> None:
        """Replace the data link by a folder whose datalist (absolute image paths) ``edit`` changes."""
        source = self.folder / "data"
        datalist = json.loads((source / "datalist.json").read_text())
        root = source.resolve()
        for split in ("training", "validation", "test"):
            for entry in datalist[split]:
                entry["image"] = str(root / entry["image"])
        source.unlink()
        source.mkdir()
        edit(datalist, source)
        (source / "datalist.json").write_text(json.dumps(datalist))
        self.take_snapshot()

    def revise(self, request: ForgetRequest = REQUEST, **options) -> None:
        options.setdefault("report", False)
        revise(self.folder, request, **options)


@pytest.fixture()
def bundle(trained_flat_bundle: Path, tmp_path: Path) -> Bundle:
    return Bundle(copy_trained_bundle(trained_flat_bundle, tmp_path / "flat"))


def real_image(bundle: Bundle) -> np.ndarray:
    from PIL import Image

    datalist = json.loads((bundle.folder / "data" / "datalist.json").read_text())
    return np.asarray(Image.open(bundle.folder / "data" / datalist["training"][0]["image"]), dtype=np.float32)


def real_dicom_bytes() -> bytes:
    files = sorted((data_dir() / "dicom_nih_ge_siemens" / "20180918GE").rglob("*.dcm"))
    if not files:
        pytest.skip("no GE DICOM files in the data directory")
    return files[0].read_bytes()


# --------------------------------------------------------------------------------------------------- forget set


def test_empty_forget_set(bundle: Bundle):
    with pytest.raises(PreflightError, match=r'"label in \[7\]" matches none of the 181 datalist entries'):
        bundle.revise(ForgetRequest(rule="label in {7}", method="psg", method_kwargs={"epsilon": 0.1}))
    bundle.assert_unchanged()


def test_forget_set_is_whole_training_set(bundle: Bundle):
    with pytest.raises(PreflightError, match="matches all 181 datalist entries: nothing would be retained"):
        bundle.revise(ForgetRequest(rule="label in {0, 1, 2}", method="psg", method_kwargs={"epsilon": 0.1}))
    bundle.assert_unchanged()


def test_rule_names_field_no_sample_has(bundle: Bundle):
    rule = "DeviceSerialNumber == 'SN-0042'"
    with pytest.raises(PreflightError, match=r"reads the field 'DeviceSerialNumber', which none of the 181 training"):
        bundle.revise(ForgetRequest(rule=rule, method="psg", method_kwargs={"epsilon": 0.1}))
    bundle.assert_unchanged()


def test_invalid_rule_syntax(bundle: Bundle):
    with pytest.raises(ValueError, match=r"Invalid forget rule 'label in'"):
        bundle.revise(ForgetRequest(rule="label in", method="psg", method_kwargs={"epsilon": 0.1}))
    bundle.assert_unchanged()


def test_flag_key_missing_from_batch(bundle: Bundle):
    # A hand-written overlay that swaps the trainer but never tags the samples.
    config = load_bundle_config(find_training_configs(bundle.folder))
    layout = detect_layout(config)
    overlay = build_overlay(config, layout, REQUEST, report=False)
    del overlay[f"+{layout.transforms_id}"]
    overlay_file = write_overlay(overlay, bundle.folder / "configs" / "untagged.yaml")
    with pytest.raises(ValueError, match=r"The batch has no forget flag 'forget' \(batch keys: .*TagForgetd"):
        revise(bundle.folder, overlay_file=overlay_file, in_process=True)
    bundle.assert_unchanged()


# ----------------------------------------------------------------------------------------------- data and labels


def test_labels_out_of_range(bundle: Bundle):
    def relabel(datalist: dict, folder: Path) -> None:
        datalist["training"][5]["label"] = 5

    bundle.edit_datalist(relabel)
    with pytest.raises(PreflightError, match=r"Training entry 5 has label 5, outside \[0, 2\] for the 3 output classes"):
        bundle.revise()
    bundle.assert_unchanged()


@pytest.mark.parametrize("bad_value", [np.nan, np.inf], ids=["nan", "infinite"])
def test_non_finite_image(bundle: Bundle, bad_value: float):
    image = real_image(bundle)
    image[4:10, 4:10] = bad_value

    def add_image(datalist: dict, folder: Path) -> None:
        np.save(folder / "broken.npy", image)
        datalist["training"][0]["image"] = str(folder / "broken.npy")

    bundle.edit_datalist(add_image)
    with pytest.raises(ValueError, match=r"contain NaN or infinite values \(files '.*broken\.npy'\)"):
        bundle.revise(in_process=True)
    bundle.assert_unchanged()


def test_truncated_dicom_file(bundle: Bundle):
    content = real_dicom_bytes()

    def add_dicom(datalist: dict, folder: Path) -> None:
        (folder / "truncated.dcm").write_bytes(content[: len(content) // 2])
        datalist["training"][0]["image"] = str(folder / "truncated.dcm")

    bundle.edit_datalist(add_dicom)
    with pytest.raises(PreflightError, match=r"truncated\.dcm' is truncated: .*Replace the file"):
        bundle.revise()
    bundle.assert_unchanged()


def test_dicom_file_without_header(bundle: Bundle):
    content = real_dicom_bytes()

    def add_dicom(datalist: dict, folder: Path) -> None:
        (folder / "headerless.dcm").write_bytes(content[132:])  # no preamble and no 'DICM' prefix
        datalist["training"][0]["image"] = str(folder / "headerless.dcm")

    bundle.edit_datalist(add_dicom)
    with pytest.raises(PreflightError, match=r"headerless\.dcm' is not a DICOM Part 10 file: it has no 128-byte"):
        bundle.revise()
    bundle.assert_unchanged()


# --------------------------------------------------------------------------------------------- checkpoint, network


def test_checkpoint_does_not_match_network(bundle: Bundle):
    with pytest.raises(PreflightError, match=r"does not fit the bundle's network .*shape mismatches"):
        bundle.revise(overrides={"network_def#init_features": 4})
    bundle.assert_unchanged()


def test_mismatched_class_counts(bundle: Bundle):
    with pytest.raises(PreflightError, match="Class count mismatch: the checkpoint .* has 3 output classes but the .* 4"):
        bundle.revise(overrides={"num_classes": 4})
    bundle.assert_unchanged()


def test_checkpoint_saved_as_pickled_module(bundle: Bundle):
    network = make_modality_network()
    network.load_state_dict(torch.load(bundle.checkpoint, weights_only=True))
    torch.save(network, bundle.checkpoint)
    bundle.take_snapshot()
    with pytest.raises(PreflightError, match=r"as a weights-only checkpoint .*Save the state_dict"):
        bundle.revise()
    bundle.assert_unchanged()


def test_damaged_checkpoint(bundle: Bundle):
    content = bundle.checkpoint.read_bytes()
    bundle.checkpoint.write_bytes(content[: len(content) // 3])
    bundle.take_snapshot()
    with pytest.raises(PreflightError, match=r"Cannot load .*model\.pt' as a weights-only checkpoint"):
        bundle.revise()
    bundle.assert_unchanged()


def test_missing_checkpoint(bundle: Bundle):
    bundle.checkpoint.unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.pt' not found; train the bundle first"):
        bundle.revise()
    assert sorted(p.name for p in (bundle.folder / "models").iterdir()) == [], "nothing may be written to models/"


def test_unknown_method(bundle: Bundle):
    with pytest.raises(ValueError, match=r"Unknown unlearning method 'psgg': expected one of"):
        bundle.revise(ForgetRequest(rule="label in {1}", method="psgg"))
    bundle.assert_unchanged()


def test_boundary_method_without_epsilon(bundle: Bundle):
    with pytest.raises(ValueError, match="Preset 'psg' needs epsilon"):
        bundle.revise(ForgetRequest(rule="label in {1}", method="psg"))
    bundle.assert_unchanged()


# ------------------------------------------------------------------------------------------------- bundle files


def test_unknown_bundle_layout(bundle: Bundle):
    config = bundle.folder / "configs" / "train.yaml"
    config.write_text(config.read_text().replace("\ntrainer:", "\nfit_engine:").replace("@trainer.run()", "@fit_engine.run()"))
    with pytest.raises(BundleLayoutError, match=r"Unknown bundle layout: .*fit_engine.*--trainer-id"):
        bundle.revise()
    bundle.assert_unchanged()


def test_bundle_without_training_config(bundle: Bundle):
    (bundle.folder / "configs" / "train.yaml").rename(bundle.folder / "configs" / "inference.yaml")
    with pytest.raises(FileNotFoundError, match=r"has no training config .*inference\.yaml.*--config-file"):
        bundle.revise()
    bundle.assert_unchanged()


def test_overlay_for_wrong_layout(bundle: Bundle):
    overlay = {
        "forget_rule": "label in {1}",
        "+train#deterministic_transforms": [{"_target_": "monai_unlearn.transforms.TagForgetd", "rule": "@forget_rule"}],
        "train#trainer#_target_": "monai_unlearn.engines.UnlearningTrainer",
    }
    overlay_file = bundle.folder / "configs" / "zoo_overlay.json"
    overlay_file.write_text(json.dumps(overlay))
    with pytest.raises(BundleLayoutError, match=r"refers to 'train#deterministic_transforms'.*flat layout"):
        revise(bundle.folder, overlay_file=overlay_file)
    bundle.assert_unchanged()


def test_hand_written_overlay_file_is_kept(bundle: Bundle):
    own = bundle.folder / "configs" / "revise.yaml"
    own.write_text("my_own_setting: 3\n")
    with pytest.raises(FileExistsError, match="was not generated by monai-unlearn"):
        bundle.revise()
    assert own.read_text() == "my_own_setting: 3\n", "a user's config file must not be replaced"
    bundle.assert_unchanged()


def test_version_that_cannot_be_bumped(bundle: Bundle):
    metadata = json.loads(bundle.metadata.read_text())
    metadata["version"] = "1.0"
    bundle.metadata.write_text(json.dumps(metadata))
    bundle.take_snapshot()
    with pytest.raises(ValueError, match=r"Bundle version '1\.0' is not of the form MAJOR\.MINOR\.PATCH.*--new-version"):
        bundle.revise()
    bundle.assert_unchanged()


# ------------------------------------------------------------------------------------------------ disk and folders


def _make_unwritable(folder: Path) -> Callable[[], None]:
    """Make ``folder`` refuse new files, also for root (immutable attribute); return the undo function."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: no way to make a folder unwritable for root")
    result = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"chattr +i is not supported here ({result.stderr.strip()}); root can write to any folder")
    return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_output_folder_not_writable(bundle: Bundle):
    models = bundle.folder / "models"
    undo = _make_unwritable(models)
    try:
        with pytest.raises(PermissionError, match=r"The checkpoint folder '.*models' is not writable"):
            bundle.revise()
    finally:
        undo()
    bundle.assert_unchanged()
    assert sorted(p.name for p in models.iterdir()) == ["model.pt"], "nothing may be written to models/"


def test_full_disk_when_writing_revised_weights(bundle: Bundle, monkeypatch: pytest.MonkeyPatch):
    real_write = monai_unlearn.utils._os_write

    def write_until_full(descriptor: int, data: bytes) -> int:
        # The disk fills up while the revised weights are written (their temporary file is .model.pt.*.tmp).
        if os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}")).startswith(".model.pt."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(descriptor, data)

    monkeypatch.setattr(monai_unlearn.utils, "_os_write", write_until_full)
    with pytest.raises(OSError, match=r"Could not write the revised weights .*No space left on device.*unchanged"):
        bundle.revise(in_process=True)
    bundle.assert_unchanged()
    backup = bundle.folder / "models" / f"model.original-{bundle.snapshot.checkpoint[:12]}.pt"
    assert sha256_file(backup) == bundle.snapshot.checkpoint, "the kept original must match the checkpoint"


# --------------------------------------------------------------------------------------------------------- resume


def _leave_interrupted_revision(bundle: Bundle) -> None:
    work = bundle.folder / "models" / "revision_checkpoints"
    work.mkdir()
    torch.save({"trainer": {}, "network": {}, "optimizer": {}}, work / "revision_checkpoint_iteration=3.pt")
    (work / "revision_request.json").write_text(json.dumps({"fingerprint": "another request"}))


def test_resume_without_checkpoint(bundle: Bundle):
    with pytest.raises(FileNotFoundError, match="no complete resume checkpoint .* nothing to resume"):
        bundle.revise(resume=True, checkpoint_interval=3)
    bundle.assert_unchanged()


def test_interrupted_revision_needs_resume_or_restart(bundle: Bundle):
    _leave_interrupted_revision(bundle)
    with pytest.raises(FileExistsError, match="An interrupted revision left checkpoints .*--resume .*--restart"):
        bundle.revise(checkpoint_interval=3)
    bundle.assert_unchanged()


def test_resume_with_another_request(bundle: Bundle):
    _leave_interrupted_revision(bundle)
    with pytest.raises(ValueError, match="was started with another request.*--restart"):
        bundle.revise(resume=True, checkpoint_interval=3)
    bundle.assert_unchanged()
