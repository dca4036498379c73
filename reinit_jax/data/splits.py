"""Index arithmetic: validation hold-out, label noise, online chunks, epoch order, host shares.

Every function here is a pure function of its arguments (and the seed), so a run, a resumed run and
every method of a seed see the same split, noisy labels, chunks and batch order ([Z] §6).
"""

from __future__ import annotations

import numpy as np

# Distinct stream tags so that the draws of one seed are independent of each other.
_VALIDATION, _NOISE, _EPOCH = 0x7A1, 0x9015E, 0xE90C


def holdout(seed: int, n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
  """Seeded split of ``range(n)`` into (train, validation) index arrays ([LW] §3 model selection).

  The validation set is ``round(fraction · n)`` examples; the training indices come out in the
  seeded shuffled order (so ``train_subset`` and chunks are random subsets). Shapes ``(n - v,)``,
  ``(v,)``, int64.
  """
  perm = np.random.default_rng([seed, _VALIDATION]).permutation(n)
  v = int(round(fraction * n))
  return perm[v:], np.sort(perm[:v])


def noise_draw(seed: int, n: int, q: float, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
  """The seeded label-noise draw: sorted indices ``(round(q·n),)`` and their new labels (int32).

  Depends only on (seed, n, q, num_classes), not on the labels, so the in-memory and streaming
  paths relabel the same examples.
  """
  if not 0.0 <= q < 1.0:
    raise ValueError(f"label_noise={q} must be in [0, 1)")
  rng = np.random.default_rng([seed, _NOISE])
  idx = np.sort(rng.choice(n, size=int(round(q * n)), replace=False))
  return idx, rng.integers(0, num_classes, size=len(idx)).astype(np.int32)


def label_noise(seed: int, y: np.ndarray, q: float, num_classes: int):
  """Relabels exactly ``round(q · n)`` seeded examples uniformly over all classes ([Z] §6).

  As in [Z], the new label is drawn from all ``num_classes`` classes, so it may equal the true one
  (about ``1/num_classes`` of the chosen examples keep their label). Returns ``(y_noisy, indices)``:
  int32 ``(n,)`` and the sorted chosen indices ``(round(q·n),)``.
  """
  idx, new = noise_draw(seed, len(y), q, num_classes)
  y_noisy = np.asarray(y, np.int32).copy()
  y_noisy[idx] = new
  return y_noisy, idx


def chunk_ends(n: int, chunks: int) -> np.ndarray:
  """End offsets of ``chunks`` contiguous chunks of ``n`` examples, sizes differing by ≤ 1.

  Stage t of online learning ([AA]; [Z] A.2) trains on ``[:ends[t-1]]`` = chunks 1..t. Shape
  ``(chunks,)``; ``ends[-1] == n``.
  """
  if chunks < 1 or chunks > n:
    raise ValueError(f"chunks={chunks} must be in [1, {n}] (the number of training examples)")
  sizes = np.full(chunks, n // chunks)
  sizes[: n % chunks] += 1
  return np.cumsum(sizes)


def epoch_indices(seed: int, epoch: int, n: int, batch_size: int) -> np.ndarray:
  """Batch order of one epoch: a seeded permutation of ``range(n)`` cut into full batches.

  Deterministic per ``(seed, epoch)``, so a run resumed at ``(epoch, step)`` regenerates the row and
  continues at ``[step]``. The last partial batch is dropped. Shape ``(n // batch_size,
  batch_size)``, int64. Raises ValueError when ``batch_size > n``.
  """
  if batch_size < 1 or batch_size > n:
    raise ValueError(f"batch_size={batch_size} must be in [1, {n}] (examples in this view)")
  perm = np.random.default_rng([seed, _EPOCH, epoch]).permutation(n)
  steps = n // batch_size
  return perm[: steps * batch_size].reshape(steps, batch_size)


def process_share(n: int, process_index: int, process_count: int) -> tuple[int, int]:
  """The ``[start, stop)`` share of ``n`` items read by one process (multi-host data loading).

  Contiguous shares, disjoint, covering ``range(n)``, sizes differing by ≤ 1 (the first
  ``n % process_count`` processes get one more) — the arithmetic of ``tfds.even_splits``.
  """
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(
      f"process_index={process_index} must be in [0, {process_count}) with process_count >= 1")
  base, extra = divmod(n, process_count)
  start = process_index * base + min(process_index, extra)
  return start, start + base + (1 if process_index < extra else 0)
