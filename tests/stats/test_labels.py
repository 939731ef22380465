"""Signed cluster labelling against a plain loop over the clusters of each sign."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from brainarr.stats._labels import SignedClusters, cluster_structure, signed_clusters

SHAPE = (9, 10, 11)


def _reference(stat, connectivity, threshold, tail, min_size):
    """Clusters as (sign, size, peak flat index, sum of |stat|, member flat indices), table order."""
    structure = ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    out = []
    for sign in (1.0, -1.0):
        if (sign > 0 and tail == "negative") or (sign < 0 and tail == "positive"):
            continue
        s = sign * stat
        above = s > 0 if threshold is None else s >= threshold
        labels, n = ndimage.label(above, structure=structure)
        found = []
        for i in range(1, n + 1):
            flat = np.flatnonzero(labels.ravel() == i)
            if flat.size < min_size:
                continue
            peak = flat[np.argmax(s.ravel()[flat])]
            mass = sum(abs(stat.ravel()[j]) for j in flat)
            found.append((sign, flat.size, peak, mass, flat))
        # by decreasing size; ties keep scipy's (array) order
        out += sorted(found, key=lambda c: -c[1])
    return out


def _stat(seed):
    rng = np.random.default_rng(seed)
    stat = ndimage.gaussian_filter(rng.standard_normal(SHAPE), 0.7) * 3
    stat[2, 3, 4] = stat[2, 3, 5] = 4.0  # a tie at a peak
    stat[0, 0, 0] = np.nan
    return stat


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("connectivity", [6, 26])
@pytest.mark.parametrize(
    ("threshold", "tail", "min_size"),
    [(None, "both", 1), (0.5, "both", 1), (0.5, "both", 3), (0.8, "positive", 2), (0.8, "negative", 1)],
)
def test_matches_a_loop_over_clusters(seed, connectivity, threshold, tail, min_size):
    stat = _stat(seed)
    if threshold is None:
        stat = np.where(np.abs(stat) >= 0.5, stat, 0.0)
    ref = _reference(stat, connectivity, threshold, tail, min_size)
    cl = signed_clusters(stat, cluster_structure(connectivity), threshold=threshold, tail=tail, min_size=min_size)
    assert cl.n_positive == sum(c[0] > 0 for c in ref) and cl.n_negative == sum(c[0] < 0 for c in ref)
    assert len(ref) > 3
    np.testing.assert_array_equal(cl.sizes, [c[1] for c in ref])
    np.testing.assert_array_equal(cl.signs, [c[0] for c in ref])
    np.testing.assert_array_equal(cl.peaks(stat), [c[2] for c in ref])
    np.testing.assert_allclose(cl.sums(np.abs(np.nan_to_num(stat))), [c[3] for c in ref], rtol=1e-12)
    for c, members, i in zip(ref, cl.members(), cl.ids, strict=True):
        np.testing.assert_array_equal(members, c[4])
        assert np.all(cl.labels.ravel()[members] == i)
    assert np.count_nonzero(cl.labels) == sum(c[1] for c in ref)
    spread = cl.spread(cl.sizes * cl.signs)
    for c in ref:
        assert np.all(spread.ravel()[c[4]] == c[0] * c[1])
    assert cl.labels.dtype == np.int32


def test_from_labels_round_trip_and_gaps():
    stat = np.where(np.abs(_stat(3)) >= 0.5, _stat(3), 0.0)
    cl = signed_clusters(stat, cluster_structure(26))
    again = SignedClusters.from_labels(cl.labels)
    assert (again.n_positive, again.n_negative) == (cl.n_positive, cl.n_negative)
    np.testing.assert_array_equal(again.sizes, cl.sizes)
    gappy = SignedClusters.from_labels(np.where(cl.labels == 1, 0, cl.labels))
    assert gappy.sizes[0] == 0 and gappy.peaks(stat)[0] == -1
    np.testing.assert_array_equal(gappy.peaks(stat)[1:], cl.peaks(stat)[1:])


def test_no_cluster():
    cl = signed_clusters(np.zeros(SHAPE), cluster_structure(26), threshold=1.0)
    assert cl.ids.size == 0 and cl.sizes.size == 0 and cl.peaks(np.zeros(SHAPE)).size == 0
    assert cl.members() == [] and not cl.spread(cl.sizes).any()


def test_two_sided_threshold_must_be_positive():
    with pytest.raises(ValueError, match="must be > 0"):
        signed_clusters(np.zeros(SHAPE), cluster_structure(6), threshold=0.0)
