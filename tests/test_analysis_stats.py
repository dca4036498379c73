"""Sign tests, Holm's correction and the decision tree of [LW] Table 3 and Fig. 3."""

import numpy as np
import pytest
from scipy import stats as sps

from reinit_jax.analysis import stats


def test_sign_test_against_scipy_and_by_hand():
  a = [0.9, 0.8, 0.7, 0.6, 0.5, 0.5, 0.91, 0.92, 0.93, 0.3]
  b = [0.1, 0.1, 0.1, 0.1, 0.1, 0.5, 0.1, 0.1, 0.1, 0.4]
  t = stats.sign_test(a, b)
  assert (t.wins, t.losses, t.ties) == (8, 1, 1)
  assert t.p_value == pytest.approx(sps.binomtest(8, 9, 0.5).pvalue)
  # By hand: 2 * (C(9,0) + C(9,1)) / 2^9 = 20 / 512.
  assert t.p_value == pytest.approx(20 / 512)
  assert stats.sign_test([1, 2], [1, 2]).p_value == 1.0
  with pytest.raises(ValueError, match="paired"):
    stats.sign_test([1, 2], [1])
  with pytest.raises(ValueError, match="finite"):
    stats.sign_test([np.nan], [1])


def test_holm_by_hand():
  p = [0.01, 0.04, 0.03, 0.005]
  adj, rej = stats.holm(p, 0.05)
  # Sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06.
  np.testing.assert_allclose(adj, [0.03, 0.06, 0.06, 0.02])
  assert rej.tolist() == [True, False, False, True]
  adj, _ = stats.holm([0.5, 0.9], 0.05)
  np.testing.assert_allclose(adj, [1.0, 1.0])  # capped at 1
  with pytest.raises(ValueError, match="p_values"):
    stats.holm([1.5])
  with pytest.raises(ValueError, match="alpha"):
    stats.holm([0.1], alpha=0)


def test_pairwise_uses_common_units_and_holm():
  out = {"lw": {("x", s): 0.9 for s in range(10)},
         "std": {("x", s): 0.5 for s in range(10)},
         "sp": {("x", s): 0.5 + (0.5 if s % 2 else -0.1) for s in range(12)}}
  rows = {(r.a, r.b): r for r in stats.pairwise_sign_tests(out)}
  r = rows[("lw", "std")]
  assert (r.n_pairs, r.wins, r.losses) == (10, 10, 0)
  assert r.p_value == pytest.approx(2 / 2**10)
  assert r.p_holm == pytest.approx(min(1, 3 * 2 / 2**10))  # smallest of three p-values
  assert r.significant
  assert rows[("sp", "std")].n_pairs == 10  # units 10, 11 only in sp
  assert rows[("sp", "std")].wins == 5 and not rows[("sp", "std")].significant
  with pytest.raises(ValueError, match="outcomes"):
    stats.pairwise_sign_tests({"a": {}})


def test_decision_tree_splits_on_the_informative_feature():
  rng = np.random.default_rng(0)
  records, best = [], []
  for i in range(60):
    n = int(rng.integers(500, 100000))
    records.append(dict(train_size=n, num_classes=int(rng.integers(2, 200)),
                        architecture=str(rng.choice(["scnn", "vgg16"])), dropout=0.25 * (i % 2),
                        augmentation=bool(i % 3), initializer=str(rng.choice(["he", "xavier"]))))
    best.append("layerwise" if n < 20000 else "standard")
  clf, text = stats.decision_tree(records, best)
  assert clf.get_params()["min_samples_leaf"] == 7 and clf.get_depth() <= 4
  assert text.splitlines()[0].startswith("|--- train_size <=")
  assert clf.score(stats.encode_features(records)[0], best) == 1.0
  assert "architecture=scnn" in stats.encode_features(records)[1]
  with pytest.raises(ValueError, match="max_depth"):
    stats.decision_tree(records, best, max_depth=5)
  with pytest.raises(ValueError, match="best_method"):
    stats.decision_tree(records, best[:3])
  with pytest.raises(ValueError, match="dropout"):
    stats.decision_tree([{k: v for k, v in records[0].items() if k != "dropout"}], ["x"])
