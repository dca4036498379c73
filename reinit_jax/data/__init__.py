"""reinit_jax.data: every data need of SPEC §3 and §5 behind ``build(cfg) -> Data``.

See docs/CONTRACTS.md (Data) for the interface. Modules: ``registry`` (data sets, config
validation), ``synthetic`` ([LW] §1.1 task), ``splits`` (hold-out, label noise, chunks, epoch order,
host shares), ``augment`` (presets on device and in tf.data), ``tfds_io`` (TFDS reading/streaming),
``fashion_mnist`` (Debian-backed builder), ``tiny_imagenet`` (our builder).
"""

from reinit_jax.data.pipeline import Data, Meta, Split, StreamSplit, build, global_batch, local_rows
from reinit_jax.data.registry import AUGMENTATIONS, names
from reinit_jax.data.splits import chunk_ends, epoch_indices, holdout, label_noise, process_share

__all__ = [
  "AUGMENTATIONS", "Data", "Meta", "Split", "StreamSplit", "build", "chunk_ends", "epoch_indices",
  "global_batch", "holdout", "label_noise", "local_rows", "names", "process_share",
]
