"""[Z] CIFAR study: ResNet-18 (BatchNorm), settings Ø/D/DC/DCW, S&P / LW / BAN, 200 epochs.

    python launch.py --config=configs/cifar_resnet18.py:setting=DC,method=shrink_perturb,stages=5
    python launch.py --config=configs/cifar_resnet18.py:setting=none,method=full,stages=10,distill=True
    python launch.py --config=configs/cifar_resnet18.py:dataset=cifar100,setting=DCW,method=layerwise,num_blocks=5,stages=10

`setting=` none|D|DC|DCW (Ø: no augmentation, constant lr, no wd; D: + flip/crop; DC: + cosine
restarted each stage; DCW: + weight decay 5e-4); `stages=` T of 200 epochs; `distill=True` adds
β·KL(teacher ‖ student) with β = 2 (`full` + distill = fixed-budget BAN); lr 0.1, batch 128.
Needs CIFAR prepared in TFDS (not available offline). Writes test accuracy at best validation.

Sweeps (`grid=`; 3 seeds on the run axis of every point, `seeds=3`; `dataset=cifar100` for CIFAR-100):

    python launch.py --config='configs/cifar_resnet18.py:grid=settings,seeds=3' --sweep=all    # [Z] Tables 1–2
    python launch.py --config='configs/cifar_resnet18.py:grid=stages,setting=DC' --sweep=all         # [Z] Fig. 5
    python launch.py --config='configs/cifar_resnet18.py:grid=hparams' --sweep=all                   # [Z] Fig. 4

`settings`: Ø/D/DC/DCW × {standard, shrink_perturb, layerwise (K=5, M=1), full} × distillation
off/on at T = 5 (standard without distillation is the baseline; full + distillation = BAN);
`stages`: T ∈ {2, 5, 10, 20, 25} × standard / S&P / full (each ± distillation), layerwise at [Z]'s
(K, M) ∈ {(2,1), (5,1), (5,2)}; `hparams`: lr ∈ {0.005, 0.01, 0.03, 0.05, 0.1} × weight decay ∈
{0, 1e-4, 5e-4, 1e-3, 5e-3} × standard / S&P / layerwise at T = 5, in setting DCW (the setting
presets set weight_decay, so the axis is `setting_weight_decay`).
"""

from reinit_jax import launch


def _config(arg):
  c = launch.base_config()
  c.name = "cifar_resnet18"
  c.data.dataset = "cifar10"
  c.data.batch_size = 128
  c.model.name = "resnet18"
  c.optim.epochs = 200
  c.optim.learning_rate = 0.1
  c.optim.setting = "DC"
  c.optim.setting_augmentation = "cifar"
  c.optim.setting_weight_decay = 5e-4
  c.reinit.stages = 5
  c.reinit.method = "shrink_perturb"
  c.reinit.distill_beta = 2.0
  c.run.eval_every_epochs = 1
  c.run.eval_batch_size = 500
  k = launch.apply(c, arg, grid="settings")  # which get_sweep grid (settings | stages | hparams)
  return c, k


def get_config(arg=None):
  return _config(arg)[0]


_METHODS = ("standard", "shrink_perturb", "layerwise", "full")
_LW = {2: (2, 1), 5: (5, 1), 10: (5, 2)}  # T -> [Z]'s layer-wise (K, M)


def _lw(point, stages):
  k, m = _LW[stages]
  return {**point, "num_blocks": k, "hparams.events_per_block": m}


def get_sweep(arg=None):
  """The grid named by ``grid=`` (see the module docstring)."""
  grid = _config(arg)[1]["grid"]
  if grid == "settings":
    out = []
    for p in launch.product(setting=("none", "D", "DC", "DCW"), method=_METHODS,
                            distill=(False, True)):
      out.append(_lw(p, 5) if p["method"] == "layerwise" else p)
    return out
  if grid == "stages":
    out = []
    for p in launch.product(stages=(2, 5, 10, 20, 25), method=_METHODS, distill=(False, True)):
      if p["method"] != "layerwise":
        out.append(p)
      elif p["stages"] in _LW:
        out.append(_lw(p, p["stages"]))
    return out
  if grid == "hparams":
    out = []
    for p in launch.product(setting=("DCW",), method=_METHODS[:3],
                            learning_rate=(0.005, 0.01, 0.03, 0.05, 0.1),
                            setting_weight_decay=(0.0, 1e-4, 5e-4, 1e-3, 5e-3)):
      out.append(_lw(p, 5) if p["method"] == "layerwise" else p)
    return out
  raise ValueError(f"config override grid={grid!r} is invalid; allowed: settings, stages, hparams")
