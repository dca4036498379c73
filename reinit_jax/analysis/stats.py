"""Significance between methods and the [LW] decision tree ([LW] Table 3 and Fig. 3).

Sign tests: for two methods evaluated on the same units (seed, data set, setting, ...), count the
units where A beats B and where B beats A; ties are dropped (the usual sign-test convention, as
[LW] compare "wins"); the p-value is the two-sided exact binomial test of wins ~ Bin(n, 1/2) with
``scipy.stats.binomtest``. Many pairs are corrected with Holm's step-down procedure.
"""

from __future__ import annotations

import itertools
from typing import Mapping, NamedTuple, Sequence

import numpy as np
from scipy import stats as sps

TREE_FEATURES = ("train_size", "num_classes", "architecture", "dropout", "augmentation",
                 "initializer")


class SignTest(NamedTuple):
  """Exact two-sided sign test of A against B over paired outcomes (ties dropped)."""

  wins: int  # units where A > B
  losses: int  # units where A < B
  ties: int
  p_value: float  # 1.0 when every pair ties (no evidence either way)


def sign_test(a: Sequence[float], b: Sequence[float]) -> SignTest:
  """Exact binomial sign test of paired outcomes ``a`` vs ``b`` (both (n,), higher is better)."""
  a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
  if a.shape != b.shape:
    raise ValueError(f"a and b must be paired (same length), got {a.size} and {b.size}")
  if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
    raise ValueError("a and b must be finite (drop missing runs before pairing)")
  wins, losses = int(np.sum(a > b)), int(np.sum(a < b))
  ties = a.size - wins - losses
  n = wins + losses
  p = 1.0 if n == 0 else float(sps.binomtest(wins, n, 0.5, alternative="two-sided").pvalue)
  return SignTest(wins, losses, ties, p)


def holm(p_values: Sequence[float], alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
  """Holm's step-down correction.

  With p sorted ascending p_(1) ≤ ... ≤ p_(m), the adjusted value is
  ``p~_(i) = max_{j ≤ i} min(1, (m - j + 1) p_(j))``; hypothesis i is rejected when p~ ≤ alpha
  (equivalent to stopping at the first p_(i) > alpha / (m - i + 1)).

  Args:
    p_values: (m,) p-values in [0, 1].
    alpha: family-wise error rate in (0, 1).
  Returns:
    ``(adjusted (m,), reject (m,) bool)`` in the input order.
  """
  p = np.asarray(p_values, np.float64).ravel()
  if np.any(~np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
    raise ValueError(f"p_values must lie in [0, 1], got {p_values!r}")
  if not 0 < alpha < 1:
    raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
  m = p.size
  order = np.argsort(p, kind="stable")
  scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
  adj_sorted = np.maximum.accumulate(scaled)
  adjusted = np.empty(m)
  adjusted[order] = adj_sorted
  return adjusted, adjusted <= alpha


class PairRow(NamedTuple):
  """One row of the pairwise table: A vs B over ``n_pairs`` common units."""

  a: str
  b: str
  n_pairs: int
  wins: int
  losses: int
  ties: int
  p_value: float
  p_holm: float
  significant: bool


def pairwise_sign_tests(outcomes: Mapping[str, Mapping[object, float]],
                        alpha: float = 0.05) -> list[PairRow]:
  """Sign tests between every pair of methods on their common units, Holm-corrected together.

  Args:
    outcomes: ``{method: {unit: score}}``; a unit is any hashable key (e.g. ``(setting, seed)``);
      only units present for both methods of a pair are used.
    alpha: family-wise level for Holm.
  Returns:
    One :class:`PairRow` per pair with at least one common unit (methods in sorted order).
  """
  if not isinstance(outcomes, Mapping) or len(outcomes) < 2:
    raise ValueError("outcomes must map at least two methods to {unit: score}")
  rows = []
  for a, b in itertools.combinations(sorted(outcomes), 2):
    units = sorted(set(outcomes[a]) & set(outcomes[b]), key=repr)
    if not units:
      continue
    t = sign_test([outcomes[a][u] for u in units], [outcomes[b][u] for u in units])
    rows.append((a, b, len(units), t))
  if not rows:
    return []
  adjusted, reject = holm([r[3].p_value for r in rows], alpha)
  return [PairRow(a, b, n, t.wins, t.losses, t.ties, t.p_value, float(q), bool(s))
          for (a, b, n, t), q, s in zip(rows, adjusted, reject)]


def encode_features(records: Sequence[Mapping[str, object]],
                    features: Sequence[str] = TREE_FEATURES) -> tuple[np.ndarray, list[str]]:
  """Numeric design matrix for the tree: numbers stay, strings/bools are one-hot (``name=value``).

  Args:
    records: (n,) mappings holding every name in ``features``.
  Returns:
    ``(X (n, f), feature_names (f,))``.
  """
  if not records:
    raise ValueError("records must be a non-empty sequence of feature mappings")
  cols, names = [], []
  for f in features:
    missing = [i for i, r in enumerate(records) if f not in r]
    if missing:
      raise ValueError(f"records must all have feature {f!r}; record {missing[0]} lacks it")
    vals = [r[f] for r in records]
    if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in vals):
      cols.append(np.asarray(vals, np.float64))
      names.append(f)
    else:
      for level in sorted({str(v) for v in vals}):
        cols.append(np.asarray([str(v) == level for v in vals], np.float64))
        names.append(f"{f}={level}")
  return np.stack(cols, axis=1), names


def decision_tree(records: Sequence[Mapping[str, object]], best_method: Sequence[str], *,
                  features: Sequence[str] = TREE_FEATURES, min_samples_leaf: int = 7,
                  max_depth: int = 4, seed: int = 0):
  """Fits the [LW] Fig. 3 tree predicting the best method from the experiment's features.

  Args:
    records: (n,) feature mappings (training-set size, number of classes, architecture, dropout,
      augmentation, initializer by default).
    best_method: (n,) name of the best method for each record.
    min_samples_leaf: 7 as in [LW]; max_depth: ≤ 4 as in [LW].
  Returns:
    ``(classifier, text)``: a fitted ``sklearn.tree.DecisionTreeClassifier`` and its
    ``export_text`` rendering with readable feature names.
  """
  from sklearn.tree import DecisionTreeClassifier, export_text

  if len(records) != len(best_method):
    raise ValueError(f"best_method must have one entry per record ({len(records)}), "
                     f"got {len(best_method)}")
  if not isinstance(max_depth, int) or not 1 <= max_depth <= 4:
    raise ValueError(f"max_depth must be an integer in [1, 4] ([LW] Fig. 3), got {max_depth!r}")
  x, names = encode_features(records, features)
  clf = DecisionTreeClassifier(min_samples_leaf=min_samples_leaf, max_depth=max_depth,
                               random_state=seed)
  clf.fit(x, np.asarray(best_method))
  return clf, export_text(clf, feature_names=names)
