"""Each noise kind's defining property, on real features: Fashion-MNIST photos as grey thumbnails."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import require_fashion_mnist
from vlclean.datasets.idx import FASHION_MNIST_CLASSES, read_idx
from vlclean.errors import ParamsError
from vlclean.noise import (FASHION_MNIST_PAIRS, NOISE_KIND_NAMES, NoiseSpec, budget, idn_flip_rates, inject_noise,
                           margin_percentiles, margins, neighbours, noise_metrics, resolve_pairs, transition_matrix)

N = 3000
CLASSES = pd.DataFrame({"label": range(10), "class_id": [f"c{i}" for i in range(10)],
                        "class_name": list(FASHION_MNIST_CLASSES)})


@pytest.fixture(scope="module")
def fmnist() -> tuple[np.ndarray, np.ndarray]:
    """The first 3,000 Fashion-MNIST train photos as 14x14 grey thumbnails (centred), and their labels."""
    root = require_fashion_mnist()
    images = read_idx(root / "train-images-idx3-ubyte.gz")[:N]
    labels = read_idx(root / "train-labels-idx1-ubyte.gz")[:N].astype(np.int64)
    x = np.stack([np.asarray(Image.fromarray(im).resize((14, 14), Image.BOX), dtype=np.float32).ravel() for im in images])
    return x - x.mean(axis=1, keepdims=True), labels


def run(kind: str, x: np.ndarray, y: np.ndarray, seed: int = 0, **kw: object) -> np.ndarray:
    return inject_noise(y, x, np.random.default_rng(seed), NoiseSpec(kind=kind, rate=0.2, n_classes=10, **kw))


@pytest.mark.parametrize("kind", [k for k in NOISE_KIND_NAMES if k != "pair"])
def test_every_kind_flips_exactly_the_budget_to_other_classes_and_is_seeded(fmnist, kind: str) -> None:
    x, y = fmnist
    noisy = run(kind, x, y)
    assert (noisy != y).sum() == budget(N, 0.2) == 600
    assert noisy.min() >= 0 and noisy.max() < 10
    assert np.array_equal(noisy, run(kind, x, y))
    if kind != "random":
        assert not np.array_equal(noisy, run(kind, x, y, seed=1))


def test_border_flips_sit_at_small_margins_and_random_ones_do_not(fmnist) -> None:
    x, y = fmnist
    pct = margin_percentiles(margins(y, neighbours(x, 50)))
    border = pct[run("border", x, y) != y]
    rnd = pct[run("random", x, y) != y]
    assert border.max() <= 25.0 + 1e-6  # the pool is the quarter with the smallest margins (600 < 750)
    assert 45 < rnd.mean() < 55 and border.mean() < 15


def test_nn_flips_take_the_label_of_the_nearest_other_label_neighbour(fmnist) -> None:
    x, y = fmnist
    noisy = run("nn", x, y)
    flipped = np.flatnonzero(noisy != y)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    for i in flipped[:50]:  # brute force, independent of the faiss search
        sims = xn @ xn[i]
        sims[y == y[i]] = -np.inf
        assert noisy[i] == y[np.argmax(sims)]


def test_cluster_flips_come_in_neighbourhoods_with_one_target(fmnist) -> None:
    x, y = fmnist
    noisy = run("cluster", x, y, cluster_size=5)
    flipped = noisy != y
    nb = neighbours(x, 5)
    # most flipped images have flipped neighbours sent to the same label; random flips almost never do
    together = np.mean([np.any(flipped[nb.ids[i]] & (noisy[nb.ids[i]] == noisy[i])) for i in np.flatnonzero(flipped)])
    rnd = run("random", x, y)
    rflip = rnd != y
    by_chance = np.mean([np.any(rflip[nb.ids[i]] & (rnd[nb.ids[i]] == rnd[i])) for i in np.flatnonzero(rflip)])
    assert together > 0.75 and by_chance < 0.25, (together, by_chance)


def test_pair_flips_follow_the_map(fmnist) -> None:
    x, y = fmnist
    pairs = resolve_pairs("fashion_mnist", CLASSES)
    noisy = run("pair", x, y, pairs=pairs)
    flipped = np.flatnonzero(noisy != y)
    assert len(flipped) == 600  # every Fashion-MNIST class has a pair
    assert all(noisy[i] == pairs[int(y[i])] for i in flipped)
    names = list(FASHION_MNIST_CLASSES)
    assert {names[a]: names[b] for a, b in pairs.items()} == FASHION_MNIST_PAIRS
    t = transition_matrix(y, noisy, 10)
    np.fill_diagonal(t, 0)
    assert (np.count_nonzero(t, axis=1) == 1).all()


def test_pair_presets_and_mappings_resolve_by_name_id_or_number() -> None:
    digits = pd.DataFrame({"label": range(10), "class_id": [f"digit_{i}" for i in range(10)],
                           "class_name": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]})
    assert resolve_pairs("mnist", digits) == {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}
    cifar10 = pd.DataFrame({"label": range(4), "class_id": ["cat", "dog", "truck", "automobile"],
                            "class_name": ["cat", "dog", "truck", "automobile"]})
    assert resolve_pairs("cifar10", cifar10) == {0: 1, 1: 0, 2: 3}
    c100 = pd.DataFrame({"label": range(5), "class_id": ["beaver", "dolphin", "otter", "apple", "pear"],
                         "class_name": ["beaver", "dolphin", "otter", "apple", "pear"]})
    assert resolve_pairs("cifar100", c100) == {0: 1, 1: 2, 2: 0, 3: 4, 4: 3}  # next within the superclass
    assert resolve_pairs({"Shirt": "Coat", 0: "c9"}, CLASSES) == {6: 4, 0: 9}
    with pytest.raises(ParamsError, match="noise.pairs.Hat"):
        resolve_pairs({"Hat": "Coat"}, CLASSES)
    with pytest.raises(ParamsError, match="not a preset"):
        resolve_pairs("imagenet", CLASSES)


def test_idn_rates_vary_per_image_and_steer_the_flips(fmnist) -> None:
    x, y = fmnist
    q = idn_flip_rates(N, 0.2, 0.1, np.random.default_rng(0))
    assert abs(q.mean() - 0.2) < 0.01 and q.std() > 0.07 and q.min() >= 0 and q.max() <= 1
    noisy = run("idn", x, y)
    rng = np.random.default_rng(0)
    q_used = idn_flip_rates(N, 0.2, 0.1, rng)  # the same draw the kind made first
    flipped = noisy != y
    assert q_used[flipped].mean() > q_used[~flipped].mean() + 0.03
    # instance dependence: images of one class go to different classes, steered by their features
    t = transition_matrix(y, noisy, 10)
    np.fill_diagonal(t, 0)
    assert (np.count_nonzero(t, axis=1) >= 3).all()


def test_metrics_report_rate_off_diagonal_shares_and_margins(fmnist) -> None:
    x, y = fmnist
    m = margins(y, neighbours(x, 50))
    noisy = run("border", x, y)
    met = noise_metrics(y, noisy, list(FASHION_MNIST_CLASSES), m)
    assert met["actual_rate"] == 0.2 and met["flipped"] == 600
    assert set(met["largest_off_diagonal_share"]) == set(FASHION_MNIST_CLASSES)
    assert all(0 <= v <= 1 for v in met["largest_off_diagonal_share"].values())
    assert met["flipped_margin_percentile_mean"] < 15
