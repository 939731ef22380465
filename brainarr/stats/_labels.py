"""Signed cluster labelling and per-cluster statistics, shared by GRF, permutation and tables.

A statistic map has positive clusters (connected voxels at or above a threshold) and negative
clusters (at or below minus the threshold), labelled separately so that a positive and a
negative cluster that touch stay apart. They are returned as one signed label map: positive
clusters ``1, 2, ...`` and negative clusters ``-1, -2, ...``, each numbered by decreasing size
(ties in array order). Sizes, sums and peaks are computed for all clusters at once from the
labels (:func:`numpy.bincount`, :func:`scipy.ndimage.maximum`), never by looping over
clusters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

__all__ = ["SignedClusters", "cluster_structure", "signed_clusters"]


def cluster_structure(connectivity: Literal[6, 18, 26]) -> np.ndarray:
    """3 x 3 x 3 neighbourhood for :func:`scipy.ndimage.label` (6 faces, 18 faces+edges, 26 all)."""
    if connectivity not in (6, 18, 26):
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity!r}")
    rank = {6: 1, 18: 2, 26: 3}[connectivity]
    return ndimage.generate_binary_structure(3, rank)


@dataclass(frozen=True)
class SignedClusters:
    """The clusters of both signs of a statistic map.

    Attributes
    ----------
    labels : numpy.ndarray of int32, shape of the map
        Positive clusters ``1..n_positive``, negative clusters ``-1..-n_negative``, each
        numbered by decreasing size; 0 outside clusters.
    n_positive, n_negative : int
        Number of clusters of each sign.
    sizes : numpy.ndarray of int64 (n_positive + n_negative,)
        Voxels per cluster, in the order of :attr:`ids`.
    """

    labels: np.ndarray
    n_positive: int
    n_negative: int
    sizes: np.ndarray

    @classmethod
    def from_labels(cls, labels: np.ndarray) -> SignedClusters:
        """Wrap an existing signed label map (e.g. the ``cluster`` map of a GRF result).

        Labels need not be contiguous: a missing label is a cluster of size 0.
        """
        labels = np.asarray(labels).astype(np.int32, copy=False)
        n_pos = max(int(labels.max(initial=0)), 0)
        n_neg = max(-int(labels.min(initial=0)), 0)
        lab = labels.ravel()
        pos = np.where(lab > 0, lab, np.where(lab < 0, n_pos - lab, 0))
        sizes = np.bincount(pos, minlength=n_pos + n_neg + 1)[1:].astype(np.int64)
        return cls(labels, n_pos, n_neg, sizes)

    @property
    def ids(self) -> np.ndarray:
        """Labels in table order: ``1, 2, ..., n_positive, -1, -2, ..., -n_negative`` (int64)."""
        return np.concatenate([np.arange(1, self.n_positive + 1), -np.arange(1, self.n_negative + 1)])

    @property
    def signs(self) -> np.ndarray:
        """``+1.0`` or ``-1.0`` per cluster, in the order of :attr:`ids`."""
        return np.repeat([1.0, -1.0], [self.n_positive, self.n_negative])

    def _position(self) -> np.ndarray:
        """Each voxel's position in :attr:`ids` plus one (0 outside clusters), flat."""
        lab = self.labels.ravel()
        return np.where(lab > 0, lab, np.where(lab < 0, self.n_positive - lab, 0))

    def sums(self, values: np.ndarray) -> np.ndarray:
        """Sum of ``values`` over each cluster (float64, in the order of :attr:`ids`).

        The values of a cluster are added in array order, as a loop over its voxels would.
        """
        pos = self._position()
        return np.bincount(pos, weights=np.ravel(values), minlength=self.sizes.size + 1)[1:]

    def peaks(self, values: np.ndarray) -> np.ndarray:
        """Flat index of each cluster's peak, the largest ``sign * values`` (first in array order on ties).

        -1 for a cluster without voxels.
        """
        n = self.sizes.size
        out = np.full(n, -1, np.intp)
        pos = self._position()
        member = np.flatnonzero(pos)
        if member.size == 0:
            return out
        pos = pos[member]
        signed = np.ravel(values)[member] * self.signs[pos - 1]
        best = np.asarray(ndimage.maximum(signed, labels=pos, index=np.arange(1, n + 1)))
        hit = np.flatnonzero(signed == best[pos - 1])
        found, first = np.unique(pos[hit], return_index=True)
        out[found - 1] = member[hit[first]]
        return out

    def members(self) -> list[np.ndarray]:
        """Flat indices of each cluster's voxels (array order), in the order of :attr:`ids`."""
        pos = self._position()
        member = np.flatnonzero(pos)
        order = member[np.argsort(pos[member], kind="stable")]
        return np.split(order, np.cumsum(self.sizes)[:-1]) if self.sizes.size else []

    def spread(self, per_cluster: np.ndarray) -> np.ndarray:
        """A map holding ``per_cluster[c]`` at every voxel of cluster ``c`` (order of :attr:`ids`), 0 elsewhere."""
        table = np.concatenate([[0.0], np.asarray(per_cluster, dtype=np.float64)])
        return table[self._position()].reshape(self.labels.shape)


def _label_by_size(above: np.ndarray, structure: np.ndarray, min_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Label ``above``; keep clusters of at least ``min_size`` voxels, numbered 1.. by size (desc)."""
    labels, n = ndimage.label(above, structure=structure)
    if n == 0:
        return np.zeros(above.shape, np.int32), np.zeros(0, np.int64)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    keep = np.flatnonzero(sizes >= min_size)
    order = keep[np.argsort(-sizes[keep], kind="stable")]
    relabel = np.zeros(n + 1, np.int32)
    relabel[order + 1] = np.arange(1, order.size + 1)
    return relabel[labels], sizes[order].astype(np.int64)


def signed_clusters(
    stat: np.ndarray,
    structure: np.ndarray,
    *,
    threshold: float | None = None,
    tail: Literal["both", "positive", "negative"] = "both",
    min_size: int = 1,
) -> SignedClusters:
    """Label the positive and negative clusters of a statistic map.

    Parameters
    ----------
    stat : numpy.ndarray (x, y, z)
        The statistic (t, z); NaN is in no cluster.
    structure : numpy.ndarray (3, 3, 3) of bool
        Neighbourhood (:func:`cluster_structure`).
    threshold : float, optional
        Positive clusters are made of ``stat >= threshold``, negative ones of
        ``stat <= -threshold``. Default: of ``stat > 0`` and ``stat < 0`` (a thresholded map
        whose other voxels are 0).
    tail : {"both", "positive", "negative"}, default "both"
        Which signs to label.
    min_size : int, default 1
        Clusters smaller than this (voxels) are dropped.

    Returns
    -------
    SignedClusters
        Signed labels (int32), numbered by decreasing size within each sign, and the sizes.

    Raises
    ------
    ValueError
        If ``tail="both"`` with a threshold <= 0 (the two signs would overlap).
    """
    if tail == "both" and threshold is not None and not threshold > 0:
        raise ValueError(f"signed_clusters: a two-sided threshold must be > 0, got {threshold!r}")
    stat = np.asarray(stat)
    empty = (np.zeros(stat.shape, np.int32), np.zeros(0, np.int64))
    pos, pos_sizes = empty
    neg, neg_sizes = empty
    if tail in ("both", "positive"):
        pos, pos_sizes = _label_by_size(stat > 0 if threshold is None else stat >= threshold, structure, min_size)
    if tail in ("both", "negative"):
        neg, neg_sizes = _label_by_size(stat < 0 if threshold is None else stat <= -threshold, structure, min_size)
    labels = pos - neg if neg_sizes.size else pos
    return SignedClusters(labels, int(pos_sizes.size), int(neg_sizes.size), np.concatenate([pos_sizes, neg_sizes]))
