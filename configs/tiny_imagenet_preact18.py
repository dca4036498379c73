"""[Z] Tiny ImageNet study: PreAct-ResNet-18, 64×64, 200 classes, setting DCW by default.

    python launch.py --config=configs/tiny_imagenet_preact18.py:method=layerwise,num_blocks=5,stages=5,distill=True

lr ∈ {0.01, 0.05, 0.1}, weight decay ∈ {0, 1e-4, 5e-4, 5e-3}, β = 2 ([Z]); needs the official
archive in TFDS's manual directory (reinit_jax.data.tiny_imagenet builder). Writes test accuracy
(TFDS validation split) at best held-out validation accuracy.

Sweep ([Z]'s Tiny ImageNet grid: lr × weight decay × {standard, S&P, layerwise K=5 M=1, full},
each with and without distillation, T = 5; seeds on the run axis of every point):

    python launch.py --config='configs/tiny_imagenet_preact18.py:seeds=3' --sweep=all

(setting DCW; the presets set weight_decay, so the axis is `setting_weight_decay`.)
"""

from reinit_jax import launch


def get_config(arg=None):
  c = launch.base_config()
  c.name = "tiny_imagenet_preact18"
  c.data.dataset = "tiny_imagenet"
  c.data.batch_size = 128
  c.model.name = "preact_resnet18"
  c.optim.epochs = 200
  c.optim.learning_rate = 0.1
  c.optim.setting = "DCW"
  c.optim.setting_weight_decay = 5e-4
  c.reinit.stages = 5
  c.reinit.method = "shrink_perturb"
  c.run.eval_every_epochs = 1
  c.run.eval_batch_size = 500
  launch.apply(c, arg)
  return c


def get_sweep(arg=None):
  """lr ∈ {0.01, 0.05, 0.1} × wd ∈ {0, 1e-4, 5e-4, 5e-3} × methods × distillation (T = 5)."""
  del arg
  out = []
  for p in launch.product(method=("standard", "shrink_perturb", "layerwise", "full"),
                          distill=(False, True), learning_rate=(0.01, 0.05, 0.1),
                          setting_weight_decay=(0.0, 1e-4, 5e-4, 5e-3)):
    out.append({**p, "num_blocks": 5} if p["method"] == "layerwise" else p)
  return out
