"""[LW] §1.1 synthetic task: MLP 128-32-32-8, 256 examples, full-batch GD, lr 0.05.

    python launch.py --config=configs/synthetic.py:method=layerwise,alpha=1,seeds=10,l2=0
    python launch.py --config=configs/synthetic.py:method=standard,alpha=0.5 --workdir=runs/syn_bl

`method=` any registry name (BL = standard, WELSR = random_subset, DSD = magnitude, WELS =
fixed_subset, FC = head, LW = layerwise); 9 rounds of 200 steps (1,800 steps; LW: K = 3 blocks,
M = 3 events per block); `alpha=` the signal strength; `seeds=` n runs seeds 0..n−1 vmapped in one
process; `l2=` weight decay (L2 penalty). Writes summary.json with test accuracy mean ± std over
seeds (the synthetic task has no validation split: the final test accuracy is reported).

Sweeps (reinit_jax/train/sweep.py; `grid=` picks one, seeds stay vmapped inside every point):

    python launch.py --config=configs/synthetic.py:seeds=100 --sweep=list            # main: α × 6 methods
    python launch.py --config=configs/synthetic.py:seeds=100,grid=l2 --sweep=list    # α × {BL, LW} × L2
    python launch.py --config=configs/synthetic.py:seeds=100,grid=rescale --sweep=list

`main`: α ∈ {0.5, 1, 2} × {standard, random_subset, magnitude, fixed_subset, head, layerwise};
`l2`: α × {standard, layerwise} × L2 ∈ {0, 0.005, 0.01, 0.02, 0.05, 0.1}; `rescale`: α × the
rescaling-only ablation (`rescale_only`: 5 rounds = 5 stages of 360 steps, same 1,800-step budget,
norms reset to θ_1's, nothing re-initialized); compare with `main`'s standard and layerwise.
"""

from reinit_jax.train import sweep

from reinit_jax.train.defaults import base_config, parse_overrides


def get_config(arg=None):
  c = base_config()
  c.name = "synthetic"
  c.dataset = "synthetic"
  c.model = "mlp"
  c.batch_size = 0
  c.epochs = 1800
  c.stages = 9
  c.learning_rate = 0.05
  c.method = "layerwise"
  c.max_steps_per_call = 200
  # Short names of the study's knobs, mapped to engine fields below.
  c.alpha = 1.0
  c.l2 = 0.0
  c.grid = "main"  # which get_sweep grid (main | l2 | rescale)
  c = parse_overrides(c, arg)
  c.synthetic_alpha = float(c.alpha)
  c.weight_decay = float(c.l2)
  if isinstance(c.seeds, int) or (len(c.seeds) == 1 and arg and "seeds=" in arg):
    n = c.seeds if isinstance(c.seeds, int) else c.seeds[0]
    c.seeds = tuple(range(int(n)))
  if c.method == "layerwise" and not c.method_kwargs:
    c.method_kwargs = {"events_per_block": 3}
  return c


ALPHAS = (0.5, 1.0, 2.0)
METHODS = ("standard", "random_subset", "magnitude", "fixed_subset", "head", "layerwise")
L2S = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1)


def get_sweep(arg=None):
  """The grid named by ``grid=`` (see the module docstring)."""
  grid = get_config(arg).grid
  if grid == "main":
    return sweep.product(alpha=ALPHAS, method=METHODS)
  if grid == "l2":
    return sweep.product(alpha=ALPHAS, method=("standard", "layerwise"), l2=L2S)
  if grid == "rescale":
    return sweep.product(alpha=ALPHAS, method=("rescale_only",), stages=(5,))
  raise ValueError(f"config.grid must be main, l2 or rescale, got {grid!r}")
