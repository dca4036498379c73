"""The streaming feed of :func:`reinit_jax.train.run`: data that does not fit in memory (ImageNet, [LW] §3).

Training batches come from ``StreamSplit.batches`` (tf.data, already augmented on the host). Each
process reads only its share of every global batch and the shares are assembled into one global
array sharded over the 'data' mesh axis (``data.global_batch``), so on a pod no host reads or holds
another host's rows; with one process the assembled batch is the local one.

Position in a stage = (epoch, step in the epoch). A call runs a fixed number of steps ``k``: whole
epochs when an epoch fits in ``max_steps_per_call`` (as the in-memory path), otherwise a divisor of
the epoch's steps, so an ImageNet epoch is never held on the host at once. A resumed run reopens
the epoch at its step (``start_step``: skipped batches are not decoded) and reads exactly the
batches an uninterrupted run reads.
"""

from __future__ import annotations

import numpy as np
import jax

from reinit_jax import data
from reinit_jax.train import multihost


def steps_per_call(epochs_per_stage: int, steps_per_epoch: int, max_steps: int) -> int:
  """Steps of one streamed call: g whole epochs (g | E) if an epoch fits in ``max_steps``, else
  the largest divisor of the epoch's steps ≤ ``max_steps``. One shape per run: one compilation."""
  if steps_per_epoch <= max_steps:
    from reinit_jax.train import feed
    return feed.epochs_per_call(epochs_per_stage, steps_per_epoch, max_steps) * steps_per_epoch
  return max(d for d in range(1, max_steps + 1) if steps_per_epoch % d == 0)


class TrainFeed:
  """Global training batches of one stage's streamed split, read in order and resumable.

  ``take(epoch, step, k)`` returns the next ``k`` steps from position (``epoch``, ``step``) as
  global arrays ``xs (k, B, ...)``, ``ys (k, B)`` sharded on the batch axis. Consecutive calls
  continue one open tf.data iterator; any other position reopens the epoch at ``step``.
  """

  def __init__(self, split, seed: int, steps_per_epoch: int, batch_size: int, place):
    self.split, self.seed, self.spe, self.B, self.place = split, seed, steps_per_epoch, batch_size, place
    self._it, self._pos = None, None

  def _next(self, epoch, step):
    if self._pos != (epoch, step):  # a new epoch, or a resumed position: (re)open at step
      self._it = iter(self.split.batches(self.seed, epoch, self.B, start_step=step))
    x, y = next(self._it)
    self._pos = (epoch, step + 1)
    return x, y

  def take(self, epoch: int, step: int, k: int):
    xs, ys = [], []
    for _ in range(k):
      x, y = self._next(epoch, step)
      xs.append(x)
      ys.append(y)
      epoch, step = (epoch, step + 1) if step + 1 < self.spe else (epoch + 1, 0)
    return place_steps(self.place, np.stack(xs), np.stack(ys), self.B)


def place_steps(place, xs: np.ndarray, ys: np.ndarray, batch_size: int):
  """This process's rows ``(k, B/P, ...)`` → global arrays ``(k, B, ...)`` sharded on axis 1."""
  return (data.global_batch(xs, place.batch(xs.ndim, 1), batch_size, axis=1),
          data.global_batch(ys, place.batch(ys.ndim, 1), batch_size, axis=1))


def norm_batch(split, seed: int, epoch: int, batch_size: int, place):
  """One training batch (the first of ``epoch``) as a global array ``(B, ...)``: the inputs the
  event measures layer-wise normalizations on (the whole training set is never in memory)."""
  x, _ = next(iter(split.batches(seed, epoch, batch_size)))
  return data.global_batch(x, place.batch(x.ndim, 0), batch_size)


def evaluate(eval_fn, variables, split, batch_size: int, place, shape):
  """Mean loss and accuracy ``(S,)`` of every seed over a streamed evaluation split of examples
  of ``shape`` (the model input).

  Batches have one shape (``be`` = ``batch_size`` rounded up to the device count; the final
  partial batch is zero-padded with weight 0), so ``eval_fn`` (:func:`step.make_eval`) compiles
  once. Every process runs the same number of calls (the largest share's), padding with empty
  batches, since each call is a collective over all devices.
  """
  n = len(split)
  be = -(-max(min(batch_size, n), 1) // place.n) * place.n
  pc = jax.process_count()
  b = be // pc
  share = -(-n // pc)
  nb = max(-(-share // b), 1)
  it = iter(split.batches(0, 0, be)) if n else iter(())
  idx = jax.device_put(np.arange(be, dtype=np.int32)[None], place.batch(2, 1))
  tot_l = tot_a = 0.0
  shares = [data.process_share(n, p, pc) for p in range(pc)]
  for i in range(nb):
    got = next(it, None)
    x = np.zeros((b,) + tuple(shape), np.float32)
    y = np.zeros((b,), np.int32)
    w = np.zeros((1, b), np.float32)
    if got is not None:
      m = len(got[1])
      x[:m], y[:m], w[0, :m] = got[0], got[1], 1.0
    xg = data.global_batch(x, place.batch(x.ndim, 0), be)
    yg = data.global_batch(y, place.batch(1, 0), be)
    wg = data.global_batch(w, place.batch(2, 1), be, axis=1)
    loss, acc = multihost.fetch(eval_fn(variables, xg, yg, idx, wg))
    # eval_fn returns means over this batch's rows (all processes'); the totals weight them back.
    # The count is host arithmetic: a multi-host array cannot be read back whole.
    rows = sum(min(b, max(0, hi - lo - i * b)) for lo, hi in shares)
    tot_l = tot_l + np.asarray(loss, np.float64) * rows
    tot_a = tot_a + np.asarray(acc, np.float64) * rows
  return tot_l / max(n, 1), tot_a / max(n, 1)


