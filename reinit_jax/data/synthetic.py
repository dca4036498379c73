"""The synthetic task of [LW] §1.1.

x ∈ R^128 and y uniform in {0, ..., 7}. The first three coordinates of x are ``alpha`` times the
3-bit binary code of y written with ±1, most significant bit first (class 0 → (−1, −1, −1),
class 5 = 0b101 → (1, −1, 1)); the other 125 coordinates are i.i.d. N(0, 1). The default sizes are
256 training and 10,000 test examples. Training and test sets are drawn from independent streams of
one seeded generator, so the test set does not depend on the training set's size.
"""

from __future__ import annotations

import numpy as np

DIM, NUM_CLASSES, CODE_BITS = 128, 8, 3


def class_codes() -> np.ndarray:
  """The ±1 codes of the eight classes, MSB first; float32 ``(8, 3)``."""
  bits = (np.arange(NUM_CLASSES)[:, None] >> np.arange(CODE_BITS - 1, -1, -1)[None, :]) & 1
  return (2.0 * bits - 1.0).astype(np.float32)


def sample(n: int, alpha: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Draws ``n`` examples: x float32 ``(n, 128)``, y int32 ``(n,)`` ([LW] §1.1)."""
  y = rng.integers(0, NUM_CLASSES, size=n).astype(np.int32)
  x = rng.standard_normal((n, DIM)).astype(np.float32)
  x[:, :CODE_BITS] = np.float32(alpha) * class_codes()[y]
  return x, y


def generate(seed: int, alpha: float = 1.0, num_train: int = 256, num_test: int = 10000):
  """Training and test sets of the task for ``seed``: ``((x_train, y_train), (x_test, y_test))``.

  Shapes: x ``(n, 128)`` float32, y ``(n,)`` int32.
  """
  train_rng, test_rng = (np.random.default_rng([seed, 0x5E7, stream]) for stream in (0, 1))
  return sample(num_train, alpha, train_rng), sample(num_test, alpha, test_rng)
