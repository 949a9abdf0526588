"""ImageNet-1K class metadata (WordNet ids and names), from timm's bundled tables: no network."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

WNID = re.compile(r"^n\d{8}$")


@functools.lru_cache(maxsize=1)
def _imagenet_info() -> tuple[list[str], list[str]]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    wnids = [info.index_to_label_name(i) for i in range(info.num_classes())]
    names = [info.index_to_description(i) for i in range(info.num_classes())]
    return wnids, names


def class_names_for(class_ids: Sequence[str]) -> list[str]:
    """Human-readable names for class ids: ImageNet names for WordNet ids, else the id itself."""
    if not any(WNID.match(c) for c in class_ids):
        return list(class_ids)
    wnids, names = _imagenet_info()
    by_wnid = dict(zip(wnids, names))
    return [by_wnid.get(c, c) for c in class_ids]


def wnids_for_names(names: Sequence[str]) -> list[str] | None:
    """WordNet ids for a 1,000-class label list in ImageNet order, or None if it is not ImageNet-1K."""
    wnids, ref = _imagenet_info()
    if len(names) != len(ref):
        return None
    norm = [n.split(",")[0].strip().lower() for n in names]
    ref_norm = [n.split(",")[0].strip().lower() for n in ref]
    agree = sum(a == b for a, b in zip(norm, ref_norm))
    return list(wnids) if agree >= 0.9 * len(ref) else None
