"""[LW] §1.1 synthetic task: MLP 128-32-32-8, 256 examples, full-batch gradient descent, lr 0.05.

    python launch.py --config=configs/synthetic.py:method=layerwise,alpha=1,seeds=10,l2=0
    python launch.py --config=configs/synthetic.py:method=standard,alpha=0.5 --workdir=runs/syn_bl

`method=` any registry name (BL = standard, WELSR = random_subset, DSD = magnitude, WELS =
fixed_subset, FC = head, LW = layerwise); 9 rounds of 200 steps (1,800 steps; LW: K = 3 blocks,
M = 3 events per block); `alpha=` the signal strength; `seeds=` n runs seeds 0..n−1 on the run
axis; `l2=` weight decay (L2 penalty). Plain gradient descent (momentum 0), as [LW] §1.1 states;
`momentum=0.9` is the variant with SGD momentum. LW's events with k = K (every layer is a
block, so they re-initialize nothing) set no normalization on the logits by default
(`idle_norm_policy=skip`; `idle_norm_policy=set` is Algorithm 1 read literally; see the comment in
get_config). Every seed draws its own training and test set
(independent runs, as the papers average); `shared_data=1` makes all seeds share the set drawn from
the first seed. Writes summary.json with the final test accuracy mean ± std over seeds (the task
has no validation split).

Sweeps (`grid=` picks one; seeds stay on the run axis of every point; with `--sweep=all` the points
of one method train as one pack, since α is per-seed data and L2 a value: README, Launching):

    python launch.py --config=configs/synthetic.py:seeds=100 --sweep=all            # main: α × 6 methods
    python launch.py --config=configs/synthetic.py:seeds=100,grid=l2 --sweep=all    # α × {BL, LW} × L2
    python launch.py --config=configs/synthetic.py:seeds=100,grid=rescale --sweep=all
    python launch.py --config=configs/synthetic.py:seeds=100,grid=idle --sweep=all
    python launch.py --config=configs/synthetic.py:seeds=100,grid=momentum --sweep=all

`main`: α ∈ {0.5, 1, 2} × {standard, random_subset, magnitude, fixed_subset, head, layerwise};
`idle`: α × layerwise with `idle_norm_policy=set`; `momentum`: `main` with SGD momentum 0.9;
`l2`: α × {standard, layerwise} × L2 ∈ {0, 0.005, 0.01, 0.02, 0.05, 0.1}; `rescale`: α × the
rescaling-only ablation (`rescale_only`: 5 rounds = 5 stages of 360 steps, same 1,800-step budget,
norms reset to θ_1's, nothing re-initialized); compare with `main`'s standard and layerwise.
"""

from reinit_jax import launch

ALPHAS = (0.5, 1.0, 2.0)
METHODS = ("standard", "random_subset", "magnitude", "fixed_subset", "head", "layerwise")
L2S = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1)


def _config(arg):
  c = launch.base_config()
  c.name = "synthetic"
  c.data.dataset = "synthetic"
  c.data.batch_size = 0  # full batch: gradient descent
  c.model.name = "mlp"
  c.optim.epochs = 1800
  c.optim.learning_rate = 0.05
  c.optim.momentum = 0.0  # [LW] §1.1: "gradient descent with a learning rate 0.05"
  c.reinit.stages = 9
  c.reinit.method = "layerwise"
  # Every layer of the MLP is a block, so the events with k = K re-initialize nothing; 'skip' sets
  # no normalization there: [LW]'s blocks always have a head above them (App. A's 3-layer variant
  # re-initializes the top layer in its last round), so its normalizations never act on the logits.
  # `idle_norm_policy=set` is the literal reading of Algorithm 1 (a normalization of the logits).
  c.reinit.idle_norm_policy = "skip"
  c.run.max_steps_per_call = 200
  k = launch.apply(c, arg, alpha=1.0, l2=0.0, grid="main", shared_data=0)
  c.data.synthetic_alpha = float(k["alpha"])
  c.data.per_seed = not k["shared_data"]
  c.optim.weight_decay = float(k["l2"])
  if c.reinit.method == "layerwise" and not c.reinit.hparams:
    c.reinit.hparams = {"events_per_block": 3}
  return c, k


def get_config(arg=None):
  return _config(arg)[0]


def get_sweep(arg=None):
  """The grid named by ``grid=`` (see the module docstring)."""
  grid = _config(arg)[1]["grid"]
  if grid == "main":
    return launch.product(alpha=ALPHAS, method=METHODS)
  if grid == "l2":
    return launch.product(alpha=ALPHAS, method=("standard", "layerwise"), l2=L2S)
  if grid == "rescale":
    return launch.product(alpha=ALPHAS, method=("rescale_only",), stages=(5,))
  if grid == "idle":  # the other reading of LW's k = K events
    return launch.product(alpha=ALPHAS, method=("layerwise",), idle_norm_policy=("set",))
  if grid == "momentum":  # the SGD-momentum variant of the main grid
    return launch.product(alpha=ALPHAS, method=METHODS, momentum=(0.9,))
  raise ValueError(f"config override grid={grid!r} is invalid; allowed: main, l2, rescale, idle, "
                   "momentum")
