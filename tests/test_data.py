import hashlib
import pickle
import struct

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd

from course_lib.data import (
    TOY_NAMES,
    TensorLoader,
    load_dataset,
    load_mnist5k,
    load_toy2d,
    sample_images,
)


def test_mnist5k_shapes_labels_and_range(mnist):
    x_train, y_train, x_test, y_test = mnist
    assert x_train.shape == (4000, 1, 28, 28) and x_test.shape == (1000, 1, 28, 28)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert y_train.bincount().tolist() == [400] * 10 and y_test.bincount().tolist() == [100] * 10
    assert y_test[:50].bincount().tolist() == [5] * 10  # every prefix is balanced
    assert x_train.min() == 0 and x_train.max() == 1
    # train and test are disjoint images
    train_hashes = {hashlib.md5(img.numpy().tobytes()).hexdigest() for img in x_train}
    assert not any(hashlib.md5(img.numpy().tobytes()).hexdigest() in train_hashes for img in x_test)


def test_mnist5k_split_is_fixed():
    a, b = load_mnist5k(), load_mnist5k()
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


@pytest.mark.parametrize("name", TOY_NAMES)
def test_toy2d_lives_in_the_unit_square(name):
    x, y = load_toy2d(name, n=300, noise=0.1, seed=3)
    assert x.shape == (300, 2) and y.shape == (300,)
    assert x.min() >= 0 and x.max() <= 1
    assert x.std(0).min() > 0.1  # spread over the square, not squeezed into a corner
    assert set(y.tolist()) == ({0, 1, 2} if name == "blobs" else {0, 1})
    x2, _ = load_toy2d(name, n=300, noise=0.1, seed=3)
    assert torch.equal(x, x2)


def test_toy2d_sets_share_one_frame_across_seeds():
    # noise-free moons lie on the same two arcs whatever the seed: their extremes coincide
    a, _ = load_toy2d("moons", n=2000, noise=0.0, seed=0)
    b, _ = load_toy2d("moons", n=2000, noise=0.0, seed=1)
    torch.testing.assert_close(a.amin(0), b.amin(0), atol=5e-3, rtol=0)
    torch.testing.assert_close(a.amax(0), b.amax(0), atol=5e-3, rtol=0)


def test_toy2d_rejects_unknown_names_and_bad_arguments():
    with pytest.raises(ValueError, match="name must be one of.*moons"):
        load_toy2d("swissroll")
    with pytest.raises(ValueError, match="noise"):
        load_toy2d("moons", noise=-1)
    with pytest.raises(ValueError, match="n must be"):
        load_toy2d("moons", n=0)


def test_load_dataset_rejects_unknown_names():
    with pytest.raises(ValueError, match="name must be one of.*cifar10"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="split"):
        load_dataset("mnist", split="val")


def _write_idx(path, images, labels):
    """MNIST's on-disk idx format: big-endian header, then raw uint8."""
    n, rows, cols = images.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    images_name, labels_name = path.name + "-images-idx3-ubyte", path.name + "-labels-idx1-ubyte"
    (path.parent / images_name).write_bytes(
        struct.pack(">IIII", 2051, n, rows, cols) + images.tobytes()
    )
    (path.parent / labels_name).write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_torchvision_mnist_path_reads_offline_files(tmp_path, name, folder):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 7, dtype=np.uint8)
    for prefix in ("train", "t10k"):
        _write_idx(tmp_path / folder / "raw" / prefix, images, labels)
    x, y = load_dataset(name, "test", root=tmp_path, download=False)
    assert x.shape == (7, 1, 28, 28) and x.dtype == torch.float32
    assert torch.equal(x[:, 0], torch.from_numpy(images).float() / 255)
    assert y.tolist() == labels.tolist()


def test_torchvision_cifar10_path_reads_offline_files(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    files = {}
    for fname in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, 3).tolist()
        (folder / fname).write_bytes(pickle.dumps({"data": data, "labels": labels}))
        files[fname] = (data, labels)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": ["c"] * 10}))
    md5 = {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in folder.iterdir()}
    # torchvision checks every file's MD5 against the real CIFAR-10: point it at our fakes
    monkeypatch.setattr(
        tvd.CIFAR10,
        "train_list",
        [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)],
    )
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(
        tvd.CIFAR10,
        "meta",
        {"filename": "batches.meta", "key": "label_names", "md5": md5["batches.meta"]},
    )
    x, y = load_dataset("cifar10", "train", root=tmp_path, download=False)
    assert x.shape == (15, 3, 32, 32)
    expected = torch.from_numpy(files["data_batch_1"][0]).view(3, 3, 32, 32).float() / 255
    assert torch.equal(x[:3], expected)  # CIFAR stores channel planes: (3072,) = (3, 32, 32)
    assert y[:3].tolist() == files["data_batch_1"][1]


def test_torchvision_path_fails_clearly_without_files(tmp_path):
    with pytest.raises(RuntimeError, match="not found"):
        load_dataset("mnist", "train", root=tmp_path, download=False)


def test_sample_images_are_rgb_in_unit_range():
    x, names = sample_images(size=32)
    assert x.shape == (4, 3, 32, 32) and len(names) == 4
    assert x.min() >= 0 and x.max() <= 1 and x.std() > 0.05


def test_tensor_loader_visits_every_sample_once_per_epoch():
    x = torch.arange(10).float().view(10, 1)
    y = torch.arange(10)
    loader = TensorLoader(x, y, batch_size=4, seed=1)
    assert len(loader) == 3
    for _ in range(2):
        seen = torch.cat([yb for _, yb in loader])
        assert sorted(seen.tolist()) == list(range(10))
    xb, yb = next(iter(loader))
    assert torch.equal(xb[:, 0].long(), yb)  # pairs stay aligned
    with pytest.raises(ValueError, match="batch_size"):
        TensorLoader(x, y, batch_size=0)
    with pytest.raises(ValueError, match="equal length"):
        TensorLoader(x, y[:3])
