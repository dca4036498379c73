"""Default study: re-initialization under label noise ([Z] §6), under two minutes on 2 CPU cores.

    python launch.py                      # = --config=configs/default.py --workdir=runs/default
    python launch.py --config=configs/default.py:q=0.2,epochs=80

Fashion-MNIST from Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist), nothing
downloaded: 3,000 training images (the first of the 54,000 left after the 10% validation hold-out),
40% of their labels replaced by uniform random classes (validation and test stay clean), an MLP
784-256-256-10, SGD lr 0.01 with momentum 0.9, batch 128, no weight decay or augmentation, 60
epochs in 4 stages with the cosine restarted at every stage, 5 seeds. Standard training, Shrink &
Perturb (λ 0.4, γ 0.1, [AA] §4) and layer-wise re-initialization ([LW] §3, K = 2 groups: the two
hidden layers, then the head).

Why this budget: re-initialization helps where standard training memorizes ([Z] §6). Here standard
training fits almost every relabelled example to its noisy label by the last stage, and its final
test accuracy falls far below its best; Shrink & Perturb keeps undoing that fit. The printed table
gives test accuracy at best validation and at the final step (mean ± std over the 5 seeds) and the
share of relabelled examples fitted to their noisy label after the last stage; curves.png draws
test accuracy with the stage boundaries. Writes runs/default/<method>/ (config.json, metrics.jsonl,
summary.json, tensorboard/, checkpoints/) and runs/default/curves.png.
"""

from reinit_jax import launch


def get_config(arg=None):
  c = launch.base_config()
  c.name = "default"
  c.data.dataset = "fashion_mnist"
  c.data.train_subset = 3000
  c.data.batch_size = 128
  c.model.name = "mlp"
  c.model.options = {"widths": (256, 256)}
  c.model.num_blocks = 2  # layerwise: K = 2 groups (dense1-2, head), M = 2 events per group
  c.optim.optimizer = "sgd"
  c.optim.learning_rate = 0.01
  c.optim.momentum = 0.9
  c.optim.weight_decay = 0.0
  c.optim.schedule = "cosine_per_stage"
  c.optim.epochs = 60
  c.reinit.stages = 4
  c.reinit.method = ("standard", "shrink_perturb", "layerwise")
  c.run.seeds = (0, 1, 2, 3, 4)
  # Validation (6,000 images) and test (10,000) every 5 epochs, 3 times a stage: best-validation
  # selection and the curves; evaluating every epoch would cost more than the training.
  c.run.eval_every_epochs = 5
  c.run.eval_train = "stage"  # memorization records (train_noisy, ...) at every stage end
  k = launch.apply(c, arg, q=0.4)
  c.data.label_noise = float(k["q"])
  return c
