"""ResultHolder: accumulation into NaN-prefilled dense arrays, recon subject filter, DDP merge."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from Engineering.errors import DataError
from Engineering.outputs import ResultHolder

K1 = "1000001/20208/2_0/primary_LAX_4Ch_transverse_0"
K2 = "1000002/20208/2_0/primary_LAX_4Ch_transverse_0"
K3 = "10000011/20208/2_0/primary_LAX_4Ch_transverse_0"
ZERO = ([0, 0], [0, 0], [0, 0])


def test_whole_scan_latents_become_1x1x1xL_float64() -> None:
    holder = ResultHolder()
    emb = torch.arange(8, dtype=torch.float32).reshape(2, 4)
    assert holder.add([K1, K2], (torch.zeros(2, dtype=torch.long),) * 3, emb) == 2
    dense = holder.to_dense()
    assert list(dense) == sorted([K1, K2])
    assert dense[K1].shape == (1, 1, 1, 4) and dense[K1].dtype == np.float64
    np.testing.assert_array_equal(dense[K2][0, 0, 0], [4, 5, 6, 7])


def test_missing_slots_stay_nan_and_shape_follows_max_index() -> None:
    holder = ResultHolder()
    holder.add([K1, K1], ([0, 1], [0, 0], [2, 0]), np.ones((2, 3), np.float32))
    arr = holder.to_dense()[K1]
    assert arr.shape == (2, 1, 3, 3)
    assert np.isnan(arr[0, 0, 0]).all() and (arr[0, 0, 2] == 1).all() and (arr[1, 0, 0] == 1).all()
    assert np.isnan(arr).sum() == 4 * 3


def test_half_precision_and_complex_values() -> None:
    holder = ResultHolder()
    holder.add([K1], ([0], [0], [0]), torch.ones(1, 2, dtype=torch.bfloat16))
    assert holder.to_dense()[K1].dtype == np.float64
    cplx = ResultHolder()
    cplx.add([K1], ([0], [0], [1]), np.array([[1 + 2j, 3j]], np.complex64))
    arr = cplx.to_dense()[K1]
    assert arr.dtype == np.complex64 and arr.shape == (1, 1, 2, 2)
    assert arr[0, 0, 1, 0] == 1 + 2j and np.isnan(arr[0, 0, 0]).all()


def test_recon_subject_filter_is_exact_not_substring() -> None:
    holder = ResultHolder()
    stored = holder.add([K1, K3], ZERO, np.zeros((2, 2, 2)), only_subjects={"10000011"})
    assert stored == 1 and holder.keys() == [K3]
    empty = ResultHolder()
    assert empty.add([K1, K3], ZERO, np.zeros((2, 2)), only_subjects=set()) == 0
    assert empty.to_dense() == {}


def test_state_is_picklable_and_merge_combines_ranks() -> None:
    rank0, rank1 = ResultHolder(), ResultHolder()
    rank0.add([K1, K2], ([0, 0], [0, 0], [0, 1]), np.array([[1.0, 2.0], [3.0, 4.0]]))
    rank1.add([K2, K1], ([0, 0], [0, 0], [0, 0]), np.array([[5.0, 6.0], [1.0, 2.0]]))  # K1 padded duplicate
    states = [pickle.loads(pickle.dumps(h.state())) for h in (rank0, rank1)]
    merged = ResultHolder.merged(ResultHolder.from_state(s) for s in states)
    dense = merged.to_dense()
    assert len(merged) == 3 and merged.subjects() == ["1000001", "1000002"]
    np.testing.assert_array_equal(dense[K2][0, 0], [[5.0, 6.0], [3.0, 4.0]])
    np.testing.assert_array_equal(dense[K1][0, 0, 0], [1.0, 2.0])


def test_duplicate_index_with_different_values_is_an_error() -> None:
    a, b = ResultHolder(), ResultHolder()
    a.add([K1], ([0], [0], [0]), np.array([[1.0]]))
    b.add([K1], ([0], [0], [0]), np.array([[2.0]]))
    with pytest.raises(DataError, match=r"key '1000001/.*' index \(0, 0, 0\) arrived twice with different values"):
        a.merge(b)


@pytest.mark.parametrize(
    ("keys", "indices", "values", "message"),
    [
        ([K1], ([0], [0]), np.zeros((1, 2)), r"indices hold 2 sequences; expected 3"),
        ([K1, K2], ([0], [0], [0]), np.zeros((2, 2)), r"index i has shape \(1,\); expected \(2,\)"),
        ([K1], ([-1], [0], [0]), np.zeros((1, 2)), r"index i holds -1; expected non-negative"),
        ([K1], ([0.5], [0], [0]), np.zeros((1, 2)), r"index i has dtype float64; expected integers"),
        ([K1], ([0], [0], [0]), np.zeros((2, 2)), r"values have shape \(2, 2\); expected \(1, \.\.\.\)"),
        ([""], ([0], [0], [0]), np.zeros((1, 2)), r"result key '' at batch position 0"),
    ],
)
def test_bad_batches_name_the_problem(keys: list, indices: tuple, values: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=message):
        ResultHolder().add(keys, indices, values)


def test_shape_change_within_a_key_is_an_error() -> None:
    holder = ResultHolder()
    holder.add([K1], ([0], [0], [0]), np.zeros((1, 4)))
    with pytest.raises(DataError, match=r"value shape \(5,\) differs from \(4,\) stored before"):
        holder.add([K1], ([0], [0], [1]), np.zeros((1, 5)))


def test_bad_state_version() -> None:
    with pytest.raises(DataError, match=r"state version 99; expected 1"):
        ResultHolder.from_state({"version": 99})


def test_gather_without_distribution_returns_the_local_holder() -> None:
    from Engineering.outputs import gather_holder, gather_to_rank0

    holder = ResultHolder()
    holder.add([K1], ([0], [0], [0]), np.ones((1, 2)))
    assert gather_to_rank0({"a": 1}) == [{"a": 1}]
    gathered = gather_holder(holder)
    assert gathered is not None and gathered.keys() == [K1] and gathered is not holder
