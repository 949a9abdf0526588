"""The package photographs load offline, as distinct real RGB photographs."""

import numpy as np
import pytest

from vlclean.photos import LOADERS, package_photographs


def test_every_package_photograph_loads_as_distinct_rgb():
    photos = package_photographs()
    assert list(photos) == list(LOADERS) and len(photos) >= 19
    means = set()
    for name, img in photos.items():
        assert img.mode == "RGB" and min(img.size) >= 100, name
        pixels = np.asarray(img, dtype=np.float32)
        assert pixels.std() > 10, f"{name} is nearly flat"
        means.add(round(float(pixels.mean()), 3))
    assert len(means) == len(photos)  # no picture twice (skimage's cat is chelsea)


def test_unknown_name_is_refused_with_the_known_ones():
    with pytest.raises(KeyError, match="skimage/astronaut"):
        package_photographs(["skimage/nope"])
