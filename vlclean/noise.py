"""Label-noise injection: seven kinds of flips, each a pure function, plus the truth they leave behind.

Every kind is ``kind(labels, features, rng, spec) -> noisy labels`` (:data:`NOISE_KINDS`): ``labels``
(N,) the given (clean) labels, ``features`` (N, D) rows in the same order (L2-normalised here; all
distances are cosine distances ``1 - cos``), ``rng`` the only randomness, ``spec`` a
:class:`NoiseSpec`. Each kind flips exactly ``floor(rate x N)`` labels (``pair``: of the images whose
class has a pair), always to another class, unless fewer images can be flipped (then all of those).

Neighbours are looked up in the *given* labels: "the nearest neighbour with another label" is
measured against the dataset as it was, not against labels flipped earlier in the same run, so a
flip's target does not depend on the order images were drawn in. (The research team's script,
``alec/scripts/noise_injection.py``, reads the partly flipped labels; at 20 % noise that changes a
few targets, never the definitions.)

``random``    uniformly chosen images get a uniformly chosen other class (symmetric noise).
``centroid``  uniformly chosen images go to another class with probability
              ``softmax(cos(image, class centroid) / temperature)`` (``intelligent``: the old name).
``nn``        uniformly chosen images get the label of their nearest neighbour that has another
              label (images without one among their ``k`` neighbours are passed over).
``border``    the *margin* of an image is (distance to its nearest other-label neighbour) minus
              (distance to its nearest same-label neighbour); small margins sit on a class border.
              Flips are drawn uniformly from the ``boundary_top_frac`` of images with the smallest
              margins and get their nearest other-label neighbour's label; when that pool runs out,
              the rest of the budget is filled as ``nn``.
``cluster``   uniformly chosen seed images flip together with their ``cluster_size`` nearest
              neighbours, all to one label: the seed's nearest other-label neighbour's label
              (members already of that label, or already flipped, are skipped).
``pair``      asymmetric class-to-class flips (Patrini et al. 2017, "Making deep neural networks
              robust to label noise: a loss correction approach"): each chosen image of a class
              with a pair goes to that pair. Presets in :data:`PAIR_PRESETS`.
``idn``       instance-dependent noise (Xia et al. 2020, "Part-dependent label noise", their IDN
              generator): each image draws a flip rate ``q ~ N(rate, 0.1^2)`` truncated to [0, 1],
              and each class a random projection ``W_y`` (D, K); the image's wrong classes are
              weighted by ``softmax(x W_y)``. Xia flips each image with probability ``q``; to keep
              budgets equal across kinds, exactly ``floor(rate x N)`` images are drawn without
              replacement with probability proportional to ``q``.

Beside the labels: :func:`transition_matrix` (true x noisy counts), :func:`margins` and
:func:`noise_metrics` (actual rate, largest off-diagonal share per class, mean margin percentile
of the flipped images: about 50 for kinds that ignore the features, small for ``border``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from vlclean.errors import ParamsError

NOISE_KIND_NAMES: tuple[str, ...] = ("random", "centroid", "nn", "border", "cluster", "pair", "idn")
KIND_ALIASES = {"intelligent": "centroid"}
FEATURE_KINDS = frozenset({"centroid", "nn", "border", "cluster", "idn"})

# Fashion-MNIST look-alikes: each class to the class a 10-nearest-neighbour vote most often mistakes it for
# (measured on the first 20,000 train images as 14x14 grey thumbnails, cosine distance; see README). Every
# class has a pair, so a pair run flips floor(rate x N) like the other kinds.
FASHION_MNIST_PAIRS = {"T-shirt/top": "Shirt", "Trouser": "Dress", "Pullover": "Coat", "Dress": "Coat",
                       "Coat": "Pullover", "Sandal": "Ankle boot", "Shirt": "T-shirt/top", "Sneaker": "Ankle boot",
                       "Bag": "Pullover", "Ankle boot": "Sneaker"}
CIFAR100_SUPERCLASSES: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}
PAIR_PRESETS: dict[str, dict[str, str]] = {
    "mnist": {"2": "7", "3": "8", "5": "6", "6": "5", "7": "1"},  # Patrini et al. 2017, MNIST
    "cifar10": {"truck": "automobile", "bird": "airplane", "deer": "horse", "cat": "dog", "dog": "cat"},  # ibid.
    "cifar100": {c: group[(i + 1) % len(group)] for group in CIFAR100_SUPERCLASSES.values() for i, c in enumerate(group)},
    "fashion_mnist": FASHION_MNIST_PAIRS,
}
_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class NoiseSpec:
    """What to inject (see module doc). ``pairs`` maps label -> label (resolved by :func:`resolve_pairs`)."""

    kind: str = "random"
    rate: float = 0.0
    n_classes: int = 2
    k: int = 50  # neighbours searched per image (nn, border, cluster, margins)
    temperature: float = 0.05  # centroid
    boundary_top_frac: float = 0.25  # border
    cluster_size: int = 5  # cluster: neighbours flipped with each seed
    pairs: Mapping[int, int] = field(default_factory=dict)  # pair
    idn_std: float = 0.1  # idn: spread of the per-image flip rates
    neighbours: Neighbours | None = None  # precomputed for these features (else searched when needed)

    def neighbours_for(self, features: np.ndarray, k: int) -> Neighbours:
        """The precomputed neighbours when they cover ``k``, else a fresh search."""
        if self.neighbours is not None and self.neighbours.ids.shape[1] >= min(k, len(features) - 1):
            return self.neighbours
        return neighbours(features, k)


def budget(n: int, rate: float) -> int:
    """The number of flips: ``floor(rate x n)`` (a tiny epsilon absorbs float error: 0.3 x 10 is 3)."""
    return int(np.floor(rate * n + 1e-9))


def canonical_kind(kind: str) -> str:
    kind = KIND_ALIASES.get(kind, kind)
    if kind not in NOISE_KIND_NAMES:
        raise ParamsError(f"params key 'noise.kind': {kind!r} is not one of {list(NOISE_KIND_NAMES)}")
    return kind


# -- neighbours -------------------------------------------------------------------------------------
def normalise(features: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(features, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class Neighbours:
    """The ``k`` nearest other images of each image by cosine distance: ``ids`` (N, k) (-1: none),
    ``dist`` (N, k), nearest first."""

    ids: np.ndarray
    dist: np.ndarray

    def nearest(self, labels: np.ndarray, *, same: bool) -> tuple[np.ndarray, np.ndarray]:
        """Per image, the nearest neighbour with the same (or another) label: ``(index, distance)``;
        ``(-1, inf)`` where none is among the ``k``."""
        valid = self.ids >= 0
        match = valid & ((labels[np.where(valid, self.ids, 0)] == labels[:, None]) == same)
        has = match.any(axis=1)
        col = match.argmax(axis=1)
        rows = np.arange(len(labels))
        idx = np.where(has, self.ids[rows, col], -1)
        dist = np.where(has, self.dist[rows, col], np.inf)
        return idx, dist


def neighbours(features: np.ndarray, k: int, *, chunk: int = 4096) -> Neighbours:
    """Cosine k-nearest neighbours of every row among the other rows: exact while the self search is
    small, an IVF index beyond :data:`vlclean.search.embedding.EXACT_PAIR_BUDGET` (``nearest_neighbors``)."""
    from vlclean.search.embedding import nearest_neighbors

    x = normalise(features)
    k = max(1, min(k, len(x) - 1))
    if len(x) < 2:
        return Neighbours(np.full((len(x), 1), -1), np.full((len(x), 1), np.inf, dtype=np.float32))
    sims, ids = nearest_neighbors(x, k=k, query_chunk=chunk)
    return Neighbours(ids, np.where(ids >= 0, 1.0 - np.nan_to_num(sims, nan=-1.0), np.inf).astype(np.float32))


def margins(labels: np.ndarray, nbrs: Neighbours) -> np.ndarray:
    """d(nearest other-label) - d(nearest same-label) per image; +inf where either is not among the k."""
    _, d_other = nbrs.nearest(labels, same=False)
    _, d_same = nbrs.nearest(labels, same=True)
    out = d_other - d_same
    return np.where(np.isfinite(d_other) & np.isfinite(d_same), out, np.inf)


def margin_percentiles(m: np.ndarray) -> np.ndarray:
    """Each image's margin as a percentile (0 = smallest margin of the set, 100 = largest)."""
    if len(m) < 2:
        return np.full(len(m), 50.0)
    ranks = pd.Series(m).rank(method="average").to_numpy()
    return (ranks - 1) / (len(m) - 1) * 100.0


# -- the kinds ----------------------------------------------------------------------------------------
def random_noise(labels: np.ndarray, features: np.ndarray | None, rng: np.random.Generator, spec: NoiseSpec) -> np.ndarray:
    noisy = labels.copy()
    if spec.n_classes < 2:
        return noisy
    flip = rng.choice(len(labels), size=budget(len(labels), spec.rate), replace=False)
    noisy[flip] = (labels[flip] + rng.integers(1, spec.n_classes, size=len(flip))) % spec.n_classes
    return noisy


def class_centroids(features: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """L2-normalised mean feature per class (n_classes, D); classes without images get zeros."""
    sums = np.zeros((n_classes, features.shape[1]))
    np.add.at(sums, labels, features)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return sums / np.where(norms == 0, 1.0, norms)


def centroid_noise(labels: np.ndarray, features: np.ndarray, rng: np.random.Generator, spec: NoiseSpec) -> np.ndarray:
    noisy = labels.copy()
    if spec.n_classes < 2:
        return noisy
    x = normalise(features)
    flip = rng.choice(len(labels), size=budget(len(labels), spec.rate), replace=False)
    sims = x[flip] @ class_centroids(x, labels, spec.n_classes).T
    sims[np.arange(len(flip)), labels[flip]] = -np.inf
    noisy[flip] = _draw(_softmax(sims / spec.temperature), rng)
    return noisy


def nn_noise(labels: np.ndarray, features: np.ndarray, rng: np.random.Generator, spec: NoiseSpec) -> np.ndarray:
    nbrs = spec.neighbours_for(features, spec.k)
    other, _ = nbrs.nearest(labels, same=False)
    noisy = labels.copy()
    order = rng.permutation(len(labels))
    chosen = order[other[order] >= 0][: budget(len(labels), spec.rate)]
    noisy[chosen] = labels[other[chosen]]
    return noisy


def border_noise(labels: np.ndarray, features: np.ndarray, rng: np.random.Generator, spec: NoiseSpec) -> np.ndarray:
    nbrs = spec.neighbours_for(features, spec.k)
    other, _ = nbrs.nearest(labels, same=False)
    m = margins(labels, nbrs)
    finite = np.flatnonzero(np.isfinite(m))
    by_margin = finite[np.argsort(m[finite], kind="stable")]
    pool = by_margin[: max(1, int(np.floor(spec.boundary_top_frac * len(by_margin))))] if len(by_margin) else by_margin
    target = budget(len(labels), spec.rate)
    pool = rng.permutation(pool)
    chosen = pool[other[pool] >= 0][:target]
    if len(chosen) < target:  # the pool ran out: fill as nn, over the images not yet flipped
        rest = rng.permutation(len(labels))
        rest = rest[(other[rest] >= 0) & ~np.isin(rest, chosen)]
        chosen = np.concatenate([chosen, rest[: target - len(chosen)]])
    noisy = labels.copy()
    noisy[chosen] = labels[other[chosen]]
    return noisy


def cluster_noise(labels: np.ndarray, features: np.ndarray, rng: np.random.Generator, spec: NoiseSpec) -> np.ndarray:
    nbrs = spec.neighbours_for(features, max(spec.k, spec.cluster_size))
    other, _ = nbrs.nearest(labels, same=False)
    target = budget(len(labels), spec.rate)
    noisy = labels.copy()
    changed = np.zeros(len(labels), dtype=bool)
    done = 0
    for seed in rng.permutation(len(labels)):
        if done >= target:
            break
        if changed[seed] or other[seed] < 0:
            continue
        to = labels[other[seed]]
        members = [seed, *[int(j) for j in nbrs.ids[seed, : spec.cluster_size] if j >= 0]]
        for i in members:
            if done >= target:
                break
            if changed[i] or labels[i] == to:
                continue
            noisy[i] = to
            changed[i] = True
            done += 1
    return noisy


def pair_noise(labels: np.ndarray, features: np.ndarray | None, rng: np.random.Generator, spec: NoiseSpec) -> np.ndarray:
    if not spec.pairs:
        raise ParamsError("params key 'noise.pairs': kind 'pair' needs a preset or a mapping")
    noisy = labels.copy()
    eligible = np.flatnonzero(np.isin(labels, list(spec.pairs)))
    chosen = rng.choice(eligible, size=budget(len(eligible), spec.rate), replace=False)
    noisy[chosen] = np.array([spec.pairs[int(c)] for c in labels[chosen]], dtype=labels.dtype)
    return noisy


def idn_flip_rates(n: int, rate: float, std: float, rng: np.random.Generator) -> np.ndarray:
    """Per-image flip rates ``q ~ N(rate, std^2)`` truncated to [0, 1] (Xia et al. 2020)."""
    from scipy.stats import truncnorm

    if std == 0:
        return np.full(n, rate)
    lo, hi = (0.0 - rate) / std, (1.0 - rate) / std
    return truncnorm.rvs(lo, hi, loc=rate, scale=std, size=n, random_state=rng)


def idn_noise(labels: np.ndarray, features: np.ndarray, rng: np.random.Generator, spec: NoiseSpec) -> np.ndarray:
    noisy = labels.copy()
    n, k = len(labels), spec.n_classes
    if n == 0 or k < 2 or spec.rate == 0:
        return noisy
    x = normalise(features)
    q = idn_flip_rates(n, spec.rate, spec.idn_std, rng)
    w = rng.standard_normal((k, x.shape[1], k)).astype(np.float32)
    p = q / q.sum() if q.sum() > 0 else None
    chosen = rng.choice(n, size=budget(n, spec.rate), replace=False, p=p)
    logits = np.einsum("nd,ndk->nk", x[chosen], w[labels[chosen]])
    logits[np.arange(len(chosen)), labels[chosen]] = -np.inf
    noisy[chosen] = _draw(_softmax(logits), rng)
    return noisy


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _draw(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cum = probs.cumsum(axis=1)
    u = rng.random(len(probs))[:, None] * cum[:, -1:]
    return np.minimum((u > cum).sum(axis=1), probs.shape[1] - 1)


NoiseKind = Callable[[np.ndarray, "np.ndarray | None", np.random.Generator, NoiseSpec], np.ndarray]
NOISE_KINDS: dict[str, NoiseKind] = {
    "random": random_noise, "centroid": centroid_noise, "nn": nn_noise, "border": border_noise,
    "cluster": cluster_noise, "pair": pair_noise, "idn": idn_noise,
}  # fmt: skip


def inject_noise(labels: np.ndarray, features: np.ndarray | None, rng: np.random.Generator, spec: NoiseSpec) -> np.ndarray:
    """Noisy copy of ``labels`` (N,) by ``spec.kind`` (see module doc); ``features`` (N, D) where the kind
    needs them (:data:`FEATURE_KINDS`)."""
    kind = canonical_kind(spec.kind)
    labels = np.asarray(labels, dtype=np.int64)
    if spec.rate == 0 or len(labels) == 0:
        return labels.copy()
    if kind in FEATURE_KINDS:
        if features is None or len(features) != len(labels):
            got = "none" if features is None else f"{len(features)} rows"
            raise ValueError(f"noise kind {kind!r} needs features for the {len(labels)} labels (got {got})")
    noisy = NOISE_KINDS[kind](labels, features, rng, spec)
    return noisy


# -- pairs --------------------------------------------------------------------------------------------
def _norm(name: object) -> str:
    return re.sub(r"[^0-9a-z]+", "_", str(name).lower()).strip("_")


def resolve_pairs(pairs: str | Mapping[object, object], classes: pd.DataFrame) -> dict[int, int]:
    """Label -> label for a preset name or a mapping by class name, class id or label number.

    Presets map by class name (``mnist``: digit or digit word); entries whose classes are not in the
    dataset are left out (a ``download.classes`` subset), ``cifar100`` then cycles within what is left of
    each superclass. At least one pair must remain.
    """
    lookup: dict[str, int] = {}
    for label, cid, name in zip(classes["label"], classes["class_id"], classes["class_name"]):
        for key in (cid, name):
            lookup.setdefault(_norm(key), int(label))
    for label in classes["label"]:
        lookup.setdefault(str(int(label)), int(label))
    if isinstance(pairs, str):
        if pairs not in PAIR_PRESETS:
            raise ParamsError(f"params key 'noise.pairs': {pairs!r} is not a preset {sorted(PAIR_PRESETS)} "
                              "(or give a mapping {from_class: to_class})")
        out = _resolve_preset(pairs, lookup)
        if not out:
            raise ParamsError(f"params key 'noise.pairs': preset {pairs!r} names none of this dataset's classes "
                              f"({list(classes['class_name'])[:10]} ...)")
        return out
    out = {}
    for src, dst in pairs.items():
        missing = [c for c in (src, dst) if _norm(c) not in lookup]
        if missing:
            raise ParamsError(f"params key 'noise.pairs.{src}': {missing} are not classes of this dataset")
        if lookup[_norm(src)] == lookup[_norm(dst)]:
            raise ParamsError(f"params key 'noise.pairs.{src}': a class cannot be paired with itself")
        out[lookup[_norm(src)]] = lookup[_norm(dst)]
    if not out:
        raise ParamsError("params key 'noise.pairs': the mapping is empty")
    return out


def _resolve_preset(name: str, lookup: dict[str, int]) -> dict[int, int]:
    def find(c: str) -> int | None:
        keys = [c]
        if name == "mnist":
            keys += [_DIGIT_WORDS[int(c)], f"digit_{c}"]
        return next((lookup[_norm(key)] for key in keys if _norm(key) in lookup), None)

    if name == "cifar100":
        out = {}
        for group in CIFAR100_SUPERCLASSES.values():
            present = [lab for lab in (find(c) for c in group) if lab is not None]
            if len(present) >= 2:
                out |= {a: present[(i + 1) % len(present)] for i, a in enumerate(present)}
        return out
    out = {}
    for src, dst in PAIR_PRESETS[name].items():
        a, b = find(src), find(dst)
        if a is not None and b is not None:
            out[a] = b
    return out


# -- what the noise did --------------------------------------------------------------------------------
def transition_matrix(true: np.ndarray, noisy: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts (n_classes, n_classes): rows the true class, columns the noisy label."""
    out = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(out, (true, noisy), 1)
    return out


def confusion_share(true: np.ndarray, noisy: np.ndarray, n_classes: int) -> float:
    """Share of flips that land in each true class's most frequent wrong class (1/(K-1) for uniform)."""
    t = transition_matrix(true, noisy, n_classes)
    np.fill_diagonal(t, 0)
    return round(float(t.max(axis=1).sum() / t.sum()), 4) if t.sum() else 0.0


def noise_metrics(true: np.ndarray, noisy: np.ndarray, class_names: list[str], margin: np.ndarray | None) -> dict:
    """Actual rate, largest off-diagonal share per class (share of the class's images sent to its most
    frequent wrong class), and the mean margin percentile of the flipped images."""
    n_classes = len(class_names)
    t = transition_matrix(true, noisy, n_classes)
    per_class = t.sum(axis=1)
    off = t.copy()
    np.fill_diagonal(off, 0)
    flipped = true != noisy
    out = {
        "train_images": int(len(true)),
        "flipped": int(flipped.sum()),
        "actual_rate": round(float(flipped.mean()) if len(true) else 0.0, 4),
        "top_confusion_share": confusion_share(true, noisy, n_classes),
        "largest_off_diagonal_share": {
            name: round(float(off[c].max() / per_class[c]), 4) if per_class[c] else 0.0
            for c, name in enumerate(class_names)
        },
    }
    if margin is not None:
        pct = margin_percentiles(margin)
        out["flipped_margin_percentile_mean"] = round(float(pct[flipped].mean()), 2) if flipped.any() else None
    return out


def noisy_labels_frame(ids: np.ndarray, true: np.ndarray, noisy: np.ndarray) -> pd.DataFrame:
    """``data/noise/train_labels.csv``: image_id, label (noisy), true_label, flipped."""
    return pd.DataFrame({"image_id": ids, "label": noisy, "true_label": true, "flipped": true != noisy})
