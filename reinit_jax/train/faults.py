"""Faults a run survives or reports in one line: non-finite steps, preemption, failed writes.

* ``guard_step`` wraps the one-seed train step so that the scanned call itself records the first
  non-finite step (loss or parameters after the update), with no host round trip per step: the
  stage loop reads the record once per jitted call, together with the call's metrics.
* ``StopFlag`` turns SIGTERM (the preemption notice of a TPU VM) and SIGINT (Ctrl-C) into a flag
  the stage loop checks after every jitted call; the loop then checkpoints and raises
  :class:`Preempted`. No KeyboardInterrupt is ever raised inside a JAX call or an XLA compilation:
  the signal waits for the next safe point.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import jax
import jax.numpy as jnp

NAN_POLICIES = ("stop", "skip")
# Exit status of launch.py after a SIGTERM checkpoint (128 + SIGTERM, as a shell reports a process
# that SIGTERM ended), so schedulers that requeue on SIGTERM treat both alike.
PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM
# Exit status of launch.py for any other one-line error (bad config, data, NaN, full disk).
ERROR_EXIT_CODE = 1


class NonFiniteError(FloatingPointError):
  """A NaN or inf in the loss or the parameters, with nan_policy='stop'."""


class Preempted(Exception):
  """The run got SIGTERM or SIGINT, wrote a checkpoint and stopped; re-running resumes.

  ``signum`` is the signal (launch.py exits with 128 + signum)."""

  def __init__(self, message: str, signum: int | None = None):
    super().__init__(message)
    self.signum = signum


from reinit_jax.checkpoint import CheckpointError  # noqa: E402,F401  (moved; the old name works)


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def guard_step(step, policy: str):
  """Wraps ``step(state, x, y, tprobs) -> (state, (loss, acc, lr))`` of one seed ([Z] §3 staged training).

  A step is bad when its loss or its updated parameters hold a NaN or inf.
  ``policy='stop'``: the first bad step is recorded in the step counter as ``-(k + 1)`` (k = the
  number of steps done before it, so step k+1 failed) and every later step of the seed is a no-op;
  the stage loop sees a negative counter after the call and stops. ``'skip'``: a bad step's update is
  not applied (parameters, optimizer and batch statistics stay), its counters still advance, so the
  data order, PRNG streams and schedule stay those of a clean run; its loss is reported as NaN
  (also when only the parameters were bad), so the call's mean loss shows that a step was skipped.
  """
  if policy not in NAN_POLICIES:
    raise ValueError(f"config.nan_policy={policy!r} is invalid; allowed: {', '.join(NAN_POLICIES)}")

  def guarded(state, x, y, tprobs):
    if policy == "skip":
      new, out = step(state, x, y, tprobs)
      ok = jnp.isfinite(out[0]) & _all_finite(new.variables["params"])
      keep = lambda a, b: jax.tree.map(lambda u, v: jnp.where(ok, u, v), a, b)
      new = new.replace(variables=keep(new.variables, state.variables),
                        opt_state=keep(new.opt_state, state.opt_state))
      return new, (jnp.where(ok, out[0], jnp.nan),) + tuple(out[1:])
    failed = state.step < 0  # an earlier step of this seed failed: keep the record, do nothing
    clean = state.replace(step=jnp.where(failed, -state.step - 1, state.step))
    new, out = step(clean, x, y, tprobs)
    ok = jnp.isfinite(out[0]) & _all_finite(new.variables["params"])
    mark = jnp.where(failed, state.step, jnp.where(ok, new.step, -clean.step - 1))
    return new.replace(step=mark.astype(new.step.dtype)), out

  return guarded


def first_bad_step(steps) -> list[tuple[int, int]]:
  """[(seed index, 1-based global step that failed)] from the (S,) step counters of a call."""
  return [(i, -int(v)) for i, v in enumerate(steps) if int(v) < 0]


class StopFlag:
  """Context manager: while active, SIGTERM and SIGINT set ``self.set`` (and ``name``/``signum``)
  instead of ending the process; a second SIGINT ends it at once (exit 130), for a user who insists.

  Flags nest: a study or a grid holds one around its runs, each run its own; a stop that a run's
  flag received is handed to the flag around it when the run ends (finished or checkpointed), so
  the study or grid stops before its next run instead of losing the request with the run.

  Python runs a signal handler only between bytecodes of the main thread, which waits inside a
  jitted call for its whole length; so the outermost flag also watches the signals from a thread
  (``signal.set_wakeup_fd``): the user reads at once that the process stops after the current call
  (``call_s``, the last call's length, set by the stage loop), and a second Ctrl-C quits at once.

  Only the main thread can install signal handlers; elsewhere (a run started from a worker thread)
  this is a no-op and the signals keep their default actions.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.set = False
    self.name, self.signum = None, None
    self._call_s = None  # seconds of the stage loop's last jitted call (the wait a stop costs)
    self._old = {}
    self._wakeup = None  # (read end, write end) of the outermost flag's signal pipe

  @property
  def call_s(self) -> float | None:
    return self._call_s

  @call_s.setter
  def call_s(self, seconds: float) -> None:
    """Set by the stage loop; handed to the flags around this one (the watching one is outermost)."""
    self._call_s = seconds
    outer = self._outer()
    if outer is not None:
      outer.call_s = seconds

  def _outer(self):
    """The flag whose handlers this one replaced (a study's or a grid's around a run), or None."""
    outer = getattr(self._old.get(signal.SIGINT), "__self__", None)
    return outer if isinstance(outer, StopFlag) else None

  def _handler(self, signum, frame):
    if self.set and signum == signal.SIGINT:
      _quit_now()
    self.set, self.signum = True, signum
    self.name = signal.Signals(signum).name

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._old = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
      self._watch()
    return self

  def _watch(self):
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    outer_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    if outer_fd != -1:  # an outer flag (a study's, a grid's) watches already: leave it its pipe
      signal.set_wakeup_fd(outer_fd, warn_on_full_buffer=False)
      os.close(read_end)
      os.close(write_end)
      return
    self._wakeup = (read_end, write_end)
    threading.Thread(target=self._announce, args=(read_end,), daemon=True).start()

  def _announce(self, read_end):
    """The watching thread: one stderr line per stop request, at once (module docstring)."""
    presses = 0
    while True:
      try:
        got = os.read(read_end, 16)
      except OSError:
        got = b""
      if not got:  # the flag closed the write end
        os.close(read_end)
        return
      for signum in got:
        if signum not in self.SIGNALS:
          continue
        name = signal.Signals(signum).name
        if signum == signal.SIGINT:
          presses += 1
        if presses >= 2:
          _quit_now()
        wait = f" (about {self.call_s:.0f} s)" if self.call_s and self.call_s >= 1 else ""
        print(f"{name}: stopping after the current call{wait}, then checkpointing; "
              "Ctrl-C again to quit at once without saving", file=sys.stderr, flush=True)

  def __exit__(self, *exc):
    if self._wakeup is not None:
      signal.set_wakeup_fd(-1)
      os.close(self._wakeup[1])  # the watching thread reads EOF, closes the read end and ends
      self._wakeup = None
    for s, old in self._old.items():
      signal.signal(s, old)
    outer = self._outer()
    if self.set and outer is not None and not outer.set:
      outer.set, outer.name, outer.signum = True, self.name, self.signum
    return False

  def stop_here(self, what: str) -> None:
    """Raises :class:`Preempted` (``what``: where the process stops) if a stop was requested."""
    if self.set:
      raise Preempted(f"{self.name}: {what}; re-run the same command to resume", self.signum)


def _quit_now():
  """A second Ctrl-C: the process ends at once (from the handler or the watching thread)."""
  print("stopped: SIGINT again: quit without saving (the last checkpoint is kept)",
        file=sys.stderr, flush=True)
  os._exit(128 + signal.SIGINT)


def exit_code(signum: int | None) -> int:
  """128 + the signal, as a shell reports a process the signal ended (130 for SIGINT)."""
  return 128 + (signum or signal.SIGTERM)
