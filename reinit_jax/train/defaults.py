"""Every field of a training config, with its default (SPEC §1–3); configs/*.py start from here.

One flat ``ml_collections.ConfigDict`` so that any field can be overridden on the command line as
``--config.<field>=<value>``. The data fields are passed to ``reinit_jax.data.build`` unchanged
(docs/CONTRACTS.md, Data); ``seed`` there is the data seed (see ``data_seed``).
"""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  """The default config: a tiny MLP on the synthetic task, standard training, one seed."""
  c = ml_collections.ConfigDict()
  c.name = "base"
  # --- what to train
  c.model = "mlp"
  c.model_kwargs = ml_collections.ConfigDict()  # normalization, initializer, dropout, widths, ...
  c.num_blocks = ml_collections.FieldReference(None, field_type=int)  # K for layerwise (None: finest)
  c.method = "standard"
  c.method_kwargs = ml_collections.ConfigDict()  # e.g. shrink=0.4, perturb=0.1
  # launch/study only: run each of these methods in <workdir>/<method>; empty: just `method`.
  c.methods = ()
  # --- data (fields of docs/CONTRACTS.md, Data)
  c.dataset = "synthetic"
  c.data_dir = ml_collections.FieldReference(None, field_type=str)
  c.manual_dir = ml_collections.FieldReference(None, field_type=str)
  c.validation_fraction = ml_collections.FieldReference(None, field_type=float)  # None: per data set
  c.batch_size = 0  # 0: full batch (gradient descent, as the synthetic task of SPEC §5)
  c.augmentation = "none"
  c.image_size = ml_collections.FieldReference(None, field_type=int)
  c.label_noise = 0.0
  c.chunks = 1  # online mode when > 1: stage t trains on chunks 1..t (then stages must equal chunks)
  c.train_subset = ml_collections.FieldReference(None, field_type=int)
  # None: per data set (ImageNet streams, the rest load into memory); False streams any TFDS data
  # set through tf.data (the path of data sets that do not fit in memory), e.g. to test it.
  c.in_memory = ml_collections.FieldReference(None, field_type=bool)
  c.synthetic_alpha = 1.0
  c.synthetic_train = 256
  c.synthetic_test = 10000
  # The data (held-out split, subset, label noise) is built once per run from this seed and shared
  # by every seed of the run's seed axis; None: the first of `seeds`.
  c.data_seed = ml_collections.FieldReference(None, field_type=int)
  # --- budget: N epochs in T stages of floor(N/T) epochs (SPEC §1)
  c.epochs = 1800
  c.stages = 9
  # --- optimization (SPEC §3)
  c.setting = ""  # '' (use the fields below) | 'none' | 'D' | 'DC' | 'DCW'
  c.setting_weight_decay = 5e-4  # the W of DCW
  c.setting_augmentation = "cifar"  # the D of D/DC/DCW
  c.optimizer = "sgd"
  c.optimizer_kwargs = ml_collections.ConfigDict()  # passed to optax.<optimizer>
  c.momentum = 0.9  # sgd only
  c.learning_rate = 0.05
  c.schedule = "constant"  # 'constant' | 'cosine_per_stage' | 'cosine'
  c.weight_decay = 0.0  # L2 added to the gradient before the optimizer (PyTorch SGD style)
  c.optimizer_policy = "reset"  # at events: 'reset' | 'keep' | 'mask'
  c.batch_stats_policy = "reset"  # at events: 'reset' | 'keep'
  # layerwise event that re-initializes nothing (k = K, last block = output layer): 'set' measures
  # the normalization after block K anyway (SPEC §1 literally), 'skip' does not (events.py)
  c.idle_norm_policy = "set"
  # --- self-distillation (SPEC §2)
  c.distill = False
  c.distill_beta = 2.0
  c.distill_live = False  # False: teacher probabilities cached once per stage on un-augmented data
  # --- seeds, evaluation, outputs
  c.seeds = (0,)
  c.eval_every_epochs = 0  # 0: evaluate at the end of every stage only
  c.eval_batch_size = 1000
  c.norm_batch_size = 256  # training examples measuring layer-wise normalizations
  c.tune_cpu_allocator = True  # CPU backend only: malloc keeps freed pages (train/host.py)
  c.max_steps_per_call = 256  # steps per jitted call (a lax.scan over whole epochs)
  c.checkpoint_every = 0  # steps; 0: only at the end of every stage
  c.keep_checkpoints = 2
  c.progress = "auto"  # 'auto' (tqdm on a terminal) | 'bar' | 'log' | 'off'
  c.distributed = False  # call jax.distributed.initialize() (multi-host)
  c.stop_after_steps = 0  # debugging: stop (after a checkpoint) once this many steps ran; 0: never
  # --- faults (README, Reliability)
  c.nan_policy = "stop"  # a NaN/inf loss or parameter: 'stop' (last good checkpoint kept) | 'skip'
  c.restart = False  # True: discard the workdir's previous outputs (another config's) and start over
  return c


def parse_overrides(config: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
  """Applies ``"k=v,k=v"`` (the ``:arg`` of ``--config=file.py:arg``) to ``config``.

  Values are parsed as Python literals where possible (ints, floats, tuples in parentheses with
  ``;`` between items, e.g. ``seeds=(0;1;2)``), else kept as strings. Unknown keys and values of
  the wrong type raise a one-line ValueError naming the field.
  """
  import ast
  if not arg:
    return config
  for item in arg.split(","):
    if not item.strip():
      continue
    if "=" not in item:
      raise ValueError(f"config override {item!r} must look like key=value")
    key, value = (s.strip() for s in item.split("=", 1))
    try:
      parsed = ast.literal_eval(value.replace(";", ","))
    except (ValueError, SyntaxError):
      parsed = value
    target = config
    *parents, leaf = key.split(".")
    for p in parents:
      target = target[p]
    if leaf not in target and not parents:  # *_kwargs dicts take new keys
      raise ValueError(f"config has no field {key!r}; fields: {', '.join(sorted(config.keys()))}")
    old = target.get(leaf)
    if isinstance(old, (tuple, list)) and not isinstance(parsed, (tuple, list)):
      parsed = (parsed,)
    if isinstance(old, float) and isinstance(parsed, int) and not isinstance(parsed, bool):
      parsed = float(parsed)
    try:
      target[leaf] = parsed
    except (TypeError, ValueError) as e:  # ConfigDict's type check: one line naming the field
      raise ValueError(f"config.{key}={value!r} is invalid: expected "
                       f"{type(old).__name__ if old is not None else 'another type'} "
                       f"({' '.join(str(e).split())})") from None
  return config
