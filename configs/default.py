"""Default study: standard vs shrink_perturb vs layerwise on a small CNN, Fashion-MNIST, 2 CPU cores.

    python launch.py                      # = --config=configs/default.py --workdir=runs/default
    python launch.py --config=configs/default.py:epochs=6,train_subset=4000

Offline: Fashion-MNIST from Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist),
prepared by TFDS on first use (about 40 s). Model `scnn_tiny` (scnn at 1/8 width) on 28×28×1, 3000
training images (after a 10% validation hold-out), batch 100, 4 epochs in 2 stages, SGD lr 0.05.
Writes runs/default/<method>/ (config.json, metrics.jsonl, summary.json, tensorboard/,
checkpoints/) and prints test accuracy per method (at best validation; expect roughly 70–80%).
"""

from reinit_jax import launch


def get_config(arg=None):
  c = launch.base_config()
  c.name = "default"
  c.data.dataset = "fashion_mnist"
  c.data.train_subset = 3000
  c.data.batch_size = 100
  c.model.name = "scnn_tiny"
  c.model.num_blocks = 2  # layerwise: K = T = 2 block groups of scnn's four blocks
  c.optim.epochs = 4
  c.optim.learning_rate = 0.05
  c.reinit.stages = 2
  c.reinit.method = "standard"
  c.reinit.methods = ("standard", "shrink_perturb", "layerwise")
  # Evaluated at the end of each stage only: the 10,333 validation and test images cost more to
  # evaluate than one epoch of 3,000 training images (bench/README.md, section 8).
  c.run.eval_every_epochs = 0
  c.run.max_steps_per_call = 30
  launch.apply(c, arg)
  return c
