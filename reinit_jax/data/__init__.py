"""reinit_jax.data: every data need of the papers' protocols behind ``build(cfg) -> Data``.

See docs/CONTRACTS.md (Data) for the interface. Modules: ``registry`` (data sets, config
validation), ``synthetic`` ([LW] §1.1 task), ``splits`` (hold-out, label noise, chunks, epoch order,
host shares), ``augment`` (presets on device and in tf.data), ``cache`` (the checksummed ``.npy``
array cache), ``fashion_mnist`` (Debian's files read with numpy), ``tfds_io`` (TFDS preparation,
reading and streaming), ``tiny_imagenet`` (our TFDS builder).

Which extras need TensorFlow: none of training on in-memory data does. The synthetic task, and any
image data set whose arrays are in the cache (``<data_dir>/reinit_jax_cache``), train with numpy and
JAX alone, and Fashion-MNIST builds its cache from Debian's ``dataset-fashion-mnist`` files with
numpy. ``tensorflow`` and ``tensorflow_datasets`` are needed only to prepare or first read any other
TFDS data set (CIFAR, Tiny ImageNet, [LW]'s data sets: once, then the cache serves it) and for
streaming (``in_memory=False``, ImageNet), which reads with tf.data.
"""

from reinit_jax.data.pipeline import Data, Meta, Split, StreamSplit, build, global_batch, local_rows
from reinit_jax.data.registry import AUGMENTATIONS, names
from reinit_jax.data.splits import chunk_ends, epoch_indices, holdout, label_noise, process_share

__all__ = [
  "AUGMENTATIONS", "Data", "Meta", "Split", "StreamSplit", "build", "chunk_ends", "epoch_indices",
  "global_batch", "holdout", "label_noise", "local_rows", "names", "process_share",
]
