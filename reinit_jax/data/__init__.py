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

from reinit_jax.data.registry import AUGMENTATIONS, names

# The rest imports JAX: loaded on first use, so that reading the data fields (registry.FIELDS, the
# training config's data section) keeps ``launch.py --help`` and ``--sweep=list`` free of JAX.
_LAZY = {**{n: "pipeline" for n in ("Data", "Meta", "Split", "StreamSplit", "build",
                                     "global_batch", "local_rows")},
         **{n: "splits" for n in ("chunk_ends", "epoch_indices", "holdout", "label_noise",
                                  "process_share")}}

__all__ = ["AUGMENTATIONS", "names", *_LAZY]


def __getattr__(name):
  if name in _LAZY:
    import importlib
    return getattr(importlib.import_module(f"reinit_jax.data.{_LAZY[name]}"), name)
  raise AttributeError(f"module 'reinit_jax.data' has no attribute {name!r}")
