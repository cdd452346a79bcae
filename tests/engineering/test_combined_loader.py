"""CombinedLoader yields what Lightning's does, mode by mode (the expected values are Lightning 2.6.6's output)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch.utils.data import DataLoader

from engineering.utilities import CombinedLoader


def loaders() -> dict[str, DataLoader]:
    return {"a": DataLoader(range(6), batch_size=4), "b": DataLoader(range(15), batch_size=5)}


def listed(combined: CombinedLoader) -> list:
    def plain(batch):
        if isinstance(batch, dict):
            return {key: plain(value) for key, value in batch.items()}
        if isinstance(batch, (list, tuple)):
            return type(batch)(plain(value) for value in batch)
        return batch.tolist() if isinstance(batch, torch.Tensor) else batch

    return [(plain(batch), batch_idx, dataloader_idx) for batch, batch_idx, dataloader_idx in combined]


@pytest.mark.parametrize("mode, length, expected", [
    ("max_size_cycle", 3, [({"a": [0, 1, 2, 3], "b": [0, 1, 2, 3, 4]}, 0, 0), ({"a": [4, 5], "b": [5, 6, 7, 8, 9]}, 1, 0),
                           ({"a": [0, 1, 2, 3], "b": [10, 11, 12, 13, 14]}, 2, 0)]),
    ("max_size", 3, [({"a": [0, 1, 2, 3], "b": [0, 1, 2, 3, 4]}, 0, 0), ({"a": [4, 5], "b": [5, 6, 7, 8, 9]}, 1, 0),
                     ({"a": None, "b": [10, 11, 12, 13, 14]}, 2, 0)]),
    ("min_size", 2, [({"a": [0, 1, 2, 3], "b": [0, 1, 2, 3, 4]}, 0, 0), ({"a": [4, 5], "b": [5, 6, 7, 8, 9]}, 1, 0)]),
    ("sequential", 5, [([0, 1, 2, 3], 0, 0), ([4, 5], 1, 0), ([0, 1, 2, 3, 4], 0, 1), ([5, 6, 7, 8, 9], 1, 1),
                       ([10, 11, 12, 13, 14], 2, 1)]),
])
def test_each_mode_yields_what_lightning_yields(mode, length, expected):
    combined = CombinedLoader(loaders(), mode)
    iter(combined)
    assert len(combined) == length
    assert listed(combined) == expected


def test_the_default_mode_is_min_size_as_in_lightning():
    assert CombinedLoader(loaders()).mode == "min_size"


def test_an_unknown_mode_names_the_ones_there_are():
    with pytest.raises(ValueError, match=r"Unsupported mode 'longest', please select one of: \['min_size', "
                                         r"'max_size_cycle', 'max_size', 'sequential'\]"):
        CombinedLoader(loaders(), "longest")


def test_len_needs_iter_first():
    with pytest.raises(RuntimeError, match=r"Please call `iter\(combined_loader\)` first"):
        len(CombinedLoader(loaders()))


def test_nested_collections_keep_their_shape_and_flatten_in_order():
    inner = DataLoader(range(2), batch_size=1)
    collection = {"x": [inner, (inner, inner)], "y": OrderedDict(z=inner)}
    combined = CombinedLoader(collection, "min_size")
    assert combined.flattened == [inner] * 4
    batch, _, _ = next(iter(combined))
    assert isinstance(batch["y"], OrderedDict) and isinstance(batch["x"][1], tuple)
    assert listed(CombinedLoader(collection, "min_size"))[1] == ({"x": [[1], ([1], [1])], "y": {"z": [1]}}, 1, 0)


def test_a_list_of_numbers_is_one_iterable_not_a_collection():
    combined = CombinedLoader([[1, 2], [3, 4]], "max_size_cycle")
    assert combined.flattened == [[1, 2], [3, 4]]
    assert listed(combined) == [([1, 3], 0, 0), ([2, 4], 1, 0)]


def test_flattened_can_be_replaced_but_not_resized():
    combined = CombinedLoader(loaders(), "max_size_cycle")
    combined.flattened = [range(2), range(3)]
    assert combined.iterables == {"a": range(2), "b": range(3)}
    with pytest.raises(ValueError, match=r"Mismatch in flattened length \(1\) and existing length \(2\)"):
        combined.flattened = [range(2)]


def test_limits_cut_the_length_and_sequential_reading():
    combined = CombinedLoader(loaders(), "sequential")
    combined.limits = [1, 2]
    iter(combined)
    assert len(combined) == 3
    assert [(batch_idx, dataloader_idx) for _, batch_idx, dataloader_idx in combined] == [(0, 0), (0, 1), (1, 1)]
    cycling = CombinedLoader(loaders(), "max_size_cycle")
    cycling.limits = 2
    iter(cycling)
    assert len(cycling) == 2
    with pytest.raises(ValueError, match=r"Mismatch in number of limits \(3\) and number of iterables \(2\)"):
        cycling.limits = [1, 2, 3]


def test_samplers_come_back_in_the_collections_shape():
    combined = CombinedLoader(loaders())
    assert combined.sampler == {key: loader.sampler for key, loader in combined.iterables.items()}
    assert combined.batch_sampler["b"].batch_size == 5
