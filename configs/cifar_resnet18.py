"""[Z] CIFAR study: ResNet-18 (BatchNorm), settings Ø/D/DC/DCW, S&P / LW / BAN, 200 epochs.

    python launch.py --config=configs/cifar_resnet18.py:setting=DC,method=shrink_perturb,stages=5
    python launch.py --config=configs/cifar_resnet18.py:setting=none,method=full,stages=10,distill=True
    python launch.py --config=configs/cifar_resnet18.py:dataset=cifar100,setting=DCW,method=layerwise,num_blocks=5,stages=10

`setting=` none|D|DC|DCW (Ø: no augmentation, constant lr, no wd; D: + flip/crop; DC: + cosine
restarted each stage; DCW: + weight decay 5e-4); `stages=` T of 200 epochs; `distill=True` adds
β·KL(teacher ‖ student) with β = 2 (`full` + distill = fixed-budget BAN); lr 0.1, batch 128.
Needs CIFAR prepared in TFDS (not available offline). Writes test accuracy at best validation.
"""

from reinit_jax.train.defaults import base_config, parse_overrides


def get_config(arg=None):
  c = base_config()
  c.name = "cifar_resnet18"
  c.dataset = "cifar10"
  c.model = "resnet18"
  c.batch_size = 128
  c.epochs = 200
  c.stages = 5
  c.learning_rate = 0.1
  c.setting = "DC"
  c.setting_augmentation = "cifar"
  c.setting_weight_decay = 5e-4
  c.method = "shrink_perturb"
  c.distill_beta = 2.0
  c.eval_every_epochs = 1
  c.eval_batch_size = 500
  return parse_overrides(c, arg)
