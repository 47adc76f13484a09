"""Shared fixtures: the real-data directory and a small DenseNet trained on BreastMNIST."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.networks.nets import DenseNet

from monai_unlearn.data import DATA_DIR_ENV, resolve_data_dir
from monai_unlearn.inner import frozen_copy

DATA_ENV_VARIABLE = DATA_DIR_ENV
BREASTMNIST_FILE = Path("medmnist") / "breastmnist_resaved.npz"

# Training of the small classifier: about 1.7 s on one CPU thread, reaching about 92 % training accuracy.
TRAIN_EPOCHS = 8
TRAIN_BATCH_SIZE = 32
TRAIN_LEARNING_RATE = 1e-3
MIN_TRAIN_ACCURACY = 0.75


def data_dir() -> Path:
    """Return the real-data directory (``$MONAI_UNLEARN_DATA``, else ``../shared/data``), or skip the test."""
    try:
        return resolve_data_dir()
    except FileNotFoundError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def single_torch_thread():
    """Run a module's tests with one torch thread, then restore the previous thread count.

    The networks in these tests are tiny, so a second thread gains little. On a 2-core machine where another process
    keeps one core busy, 2 threads made some tests 20 to 80 times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def breastmnist() -> dict[str, torch.Tensor]:
    """BreastMNIST train split as float images ``(N, 1, 28, 28)`` in [0, 1] and int64 labels ``(N,)``."""
    path = data_dir() / BREASTMNIST_FILE
    if not path.is_file():
        pytest.skip(f"BreastMNIST file not found at {path}; set {DATA_ENV_VARIABLE} to the shared data directory.")
    with np.load(path) as arrays:
        images = torch.from_numpy(arrays["train_images"].astype(np.float32) / 255.0).unsqueeze(1)
        labels = torch.from_numpy(arrays["train_labels"].reshape(-1).astype(np.int64))
    return {"images": images, "labels": labels}


@dataclass
class TrainedClassifier:
    """A DenseNet trained on BreastMNIST, its frozen copy and the training data it was fitted on."""

    network: torch.nn.Module
    frozen: torch.nn.Module
    images: torch.Tensor
    labels: torch.Tensor
    train_accuracy: float


@pytest.fixture(scope="session")
def trained_classifier(breastmnist: dict[str, torch.Tensor]) -> TrainedClassifier:
    """Train a small 2-D DenseNet on BreastMNIST for a few seconds (seeded) and freeze a copy of it."""
    images, labels = breastmnist["images"], breastmnist["labels"]
    # One thread makes the trained weights independent of the core count. It also avoids an 80-fold slowdown,
    # measured with 2 threads on a 2-core machine while another process kept one core busy.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        network = train_classifier(images, labels)
    finally:
        torch.set_num_threads(threads)

    with torch.no_grad():
        accuracy = float((network(images).argmax(dim=1) == labels).float().mean())
    assert accuracy >= MIN_TRAIN_ACCURACY, (
        f"the BreastMNIST classifier reached only {accuracy:.3f} training accuracy "
        f"(expected >= {MIN_TRAIN_ACCURACY}); tests built on it would prove nothing"
    )
    return TrainedClassifier(
        network=network, frozen=frozen_copy(network), images=images, labels=labels, train_accuracy=accuracy
    )


def train_classifier(images: torch.Tensor, labels: torch.Tensor) -> torch.nn.Module:
    """Train a seeded 2-D DenseNet with Adam and return it in eval mode."""
    torch.manual_seed(0)
    network = DenseNet(
        spatial_dims=2, in_channels=1, out_channels=2, init_features=8, growth_rate=8, block_config=(2, 2)
    )
    optimizer = torch.optim.Adam(network.parameters(), lr=TRAIN_LEARNING_RATE)
    order_generator = torch.Generator().manual_seed(0)
    for _ in range(TRAIN_EPOCHS):
        network.train()
        order = torch.randperm(len(images), generator=order_generator)
        for start in range(0, len(images), TRAIN_BATCH_SIZE):
            batch = order[start : start + TRAIN_BATCH_SIZE]
            loss = F.cross_entropy(network(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return network.eval()


# ---------------------------------------------------------------------------------------------------------------------
# The modality dataset (3 classes from real images) at a small setting, and a classifier trained on it.

REPOSITORY = Path(__file__).resolve().parents[1]
MODALITY_BUNDLE = REPOSITORY / "bundles" / "modality_classifier"
SMALL_MODALITY_SETTING = dict(
    chest_counts=(60, 20, 40),
    breast_counts=(60, 20, 40),
    max_hippocampus_cases=20,
    hippocampus_slices=(0.5,),
    max_dicom_files_per_vendor=30,
)


@pytest.fixture(scope="session")
def modality_small(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Build the small modality dataset once: its folder, datalist path and the parsed datalist."""
    from monai_unlearn.data import build_modality_dataset

    folder = tmp_path_factory.mktemp("modality_small")
    datalist_path = build_modality_dataset(folder, data_dir=data_dir(), **SMALL_MODALITY_SETTING)
    datalist = json.loads(datalist_path.read_text())
    for split in ("training", "validation", "test"):
        for entry in datalist[split]:
            entry["image"] = str(folder / entry["image"])
    return {"folder": folder, "datalist_path": datalist_path, "datalist": datalist}


def load_modality_split(modality_small: dict, split: str) -> list[dict]:
    """Return the entries of a split with their images loaded as float tensors ``(1, 28, 28)`` in [0, 1]."""
    from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged, Resized, ScaleIntensityd

    load = Compose(
        [
            LoadImaged(keys="image", image_only=True),
            EnsureChannelFirstd(keys="image", channel_dim="no_channel"),
            ScaleIntensityd(keys="image", minv=0.0, maxv=1.0),
            Resized(keys="image", spatial_size=(28, 28), mode="area"),
            EnsureTyped(keys="image", dtype=torch.float32, track_meta=False),
        ]
    )
    return [load(dict(entry)) for entry in modality_small["datalist"][split]]


@dataclass
class ModalityClassifier:
    """A 3-class modality DenseNet trained on the small real dataset, with its loaded training and test entries."""

    network: torch.nn.Module
    train: list[dict]
    test: list[dict]

    def state(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.network.state_dict().items()}


def make_modality_network() -> torch.nn.Module:
    """Return the small 2-D DenseNet used for the modality classifier in tests (BatchNorm included)."""
    return DenseNet(spatial_dims=2, in_channels=1, out_channels=3, init_features=8, growth_rate=8, block_config=(2, 2))


def train_modality_network(entries: list[dict], seed: int) -> torch.nn.Module:
    """Train :func:`make_modality_network` on ``entries`` (Adam 3e-3, 15 epochs, batches of 32) and return it in eval
    mode; ``seed`` fixes the initial weights and the batch order."""
    images = torch.stack([e["image"] for e in entries])
    labels = torch.tensor([e["label"] for e in entries])
    torch.manual_seed(seed)
    network = make_modality_network()
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
    order_generator = torch.Generator().manual_seed(seed)
    for _ in range(15):
        network.train()
        order = torch.randperm(len(images), generator=order_generator)
        for start in range(0, len(images), 32):
            batch = order[start : start + 32]
            loss = F.cross_entropy(network(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return network.eval()


@pytest.fixture(scope="session")
def modality_classifier(modality_small: dict) -> ModalityClassifier:
    """Train the modality DenseNet for a few seconds (seeded, one thread) and check that it learned the classes."""
    train = load_modality_split(modality_small, "training")
    test = load_modality_split(modality_small, "test")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        network = train_modality_network(train, seed=0)
    finally:
        torch.set_num_threads(threads)
    test_images = torch.stack([e["image"] for e in test])
    test_labels = torch.tensor([e["label"] for e in test])
    with torch.no_grad():
        accuracy = float((network(test_images).argmax(dim=1) == test_labels).float().mean())
    assert accuracy >= 0.9, f"the small modality classifier reached only {accuracy:.3f} test accuracy (expected >= 0.9)"
    return ModalityClassifier(network=network, train=train, test=test)


# ---------------------------------------------------------------------------------------------------------------------
# Bundles trained once per session by their own training configs through the bundle CLI, for the revision tests.

FLAT_BUNDLE = Path(__file__).resolve().parent / "bundles" / "flat_yaml_classifier"


def run_bundle_cli(bundle: Path, arguments: list[str], check: bool = True) -> "subprocess.CompletedProcess":
    """Run ``python -m monai.bundle ARGUMENTS`` in ``bundle`` with one thread; raise with its output if it fails."""
    import os
    import subprocess
    import sys

    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    command = [sys.executable, "-m", "monai.bundle", *arguments]
    result = subprocess.run(command, cwd=bundle, env=environment, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"bundle CLI failed ({' '.join(command)}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def copy_trained_bundle(trained: Path, destination: Path) -> Path:
    """Copy a trained bundle (configs, docs, the data link and the trained weights as models/model.pt)."""
    import shutil

    destination.mkdir(parents=True)
    for folder in ("configs", "docs", "scripts"):
        if (trained / folder).is_dir():
            shutil.copytree(trained / folder, destination / folder)
    (destination / "data").symlink_to((trained / "data").resolve())
    (destination / "models").mkdir()
    shutil.copy2(trained / "models" / "trained.pt", destination / "models" / "model.pt")
    return destination


def _train_bundle(source: Path, folder: Path, modality_small: dict, arguments: list[str]) -> Path:
    import shutil

    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("data", "models", "eval", "__pycache__"))
    (folder / "data").symlink_to(modality_small["folder"])
    run_bundle_cli(folder, arguments)
    assert (folder / "models" / "model.pt").is_file(), f"training {source.name} should write models/model.pt"
    shutil.copy2(folder / "models" / "model.pt", folder / "models" / "trained.pt")
    return folder


@pytest.fixture(scope="session")
def trained_flat_bundle(modality_small: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The flat-layout YAML test bundle, trained by its train.yaml on the small modality data (trained.pt kept)."""
    folder = tmp_path_factory.mktemp("trained_flat") / "flat_yaml_classifier"
    arguments = ["run", "train", "--config_file", "configs/train.yaml", "--meta_file", "configs/metadata.json"]
    return _train_bundle(FLAT_BUNDLE, folder, modality_small, arguments)


@pytest.fixture(scope="session")
def trained_zoo_bundle(modality_small: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model-zoo layout modality bundle, trained by its train.json for a few epochs (trained.pt kept)."""
    folder = tmp_path_factory.mktemp("trained_zoo") / "modality_classifier"
    arguments = ["run", "--config_file", "configs/train.json", "--meta_file", "configs/metadata.json"]
    arguments += ["--logging_file", "configs/logging.conf", "--num_epochs", "4", "--val_interval", "2"]
    return _train_bundle(MODALITY_BUNDLE, folder, modality_small, arguments)
