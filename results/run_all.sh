#!/bin/sh
# Reproduces results/ on CPU (the commands of results/README.md, in order). Run from the repository
# root. Re-running skips finished grid points and resumes an interrupted one.
set -e
export PYTHONPATH=.
L="--config.run.progress=off"

# (a) synthetic task [LW] §1.1, 100 seeds per cell, plain gradient descent, one data set per seed:
# α × 6 methods; LW with the literal reading of its k = K events; rescaling only; L2 × {BL, LW};
# the SGD-momentum variant.
for g in main idle rescale l2 momentum; do
  python launch.py --config=configs/synthetic.py:seeds=100,grid=$g --sweep=all \
    --workdir=runs/synthetic_${g}_100 $L
done
python -m reinit_jax.analysis.report runs/synthetic_main_100 --out results/synthetic
python results/tables.py runs/synthetic_main_100 runs/synthetic_idle_100 runs/synthetic_rescale_100 \
  --row synthetic_alpha --col method,idle_norm_policy
python results/tables.py runs/synthetic_l2_100 --row weight_decay --col method,synthetic_alpha
python results/tables.py runs/synthetic_momentum_100 --row synthetic_alpha --col method

# (b) [HR] initialization diagnostics of every model (tiny conv nets on CPU).
python results/make_init_diagnostics.py --out results/init_diagnostics

# (c) online learning [AA], [Z] A.2: every stage fitted (CPU budget `cpu=1`), 6 seeds.
python launch.py --config=configs/online.py:cpu=1,seeds=6 --sweep=all --workdir=runs/online_cpu $L
python -m reinit_jax.analysis.report runs/online_cpu --out results/online --row-by weight_decay

# (d) label noise [Z] §6 on 3,000 Fashion-MNIST images that standard training memorizes: reg (Ø,
# weight decay + cosine) × q × method × distillation, 5 seeds.
python launch.py --config=configs/label_noise.py:cpu=1 --sweep=all --workdir=runs/label_noise_cpu $L
python -m reinit_jax.analysis.report runs/label_noise_cpu --out results/label_noise --row-by label_noise,distill
python results/label_noise_gaps.py runs/label_noise_cpu

# (e) [LW] §4 on real images: scnn_tiny on 500 and 2,000 Fashion-MNIST images × six methods, 5 seeds.
python launch.py --config=configs/fashion_mnist_scnn.py:cpu=1,epochs=128 --sweep=all --workdir=runs/lw_fmnist_cpu_e128 $L
python -m reinit_jax.analysis.report runs/lw_fmnist_cpu_e128 --out results/lw_fmnist --row-by train_subset

# (f) [Z] §4-5 on 2,000 Fashion-MNIST images: settings Ø/D/DC/DCW × standard / S&P / layer-wise /
# BAN, 5 seeds; lr × weight decay in DCW × three methods, 3 seeds.
python launch.py --config=configs/fashion_mnist_settings.py:grid=settings --sweep=all --workdir=runs/fmnist_settings $L
python launch.py --config=configs/fashion_mnist_settings.py:grid=hparams --sweep=all --workdir=runs/fmnist_hparams $L
python results/settings_gaps.py runs/fmnist_settings runs/fmnist_hparams
python -m reinit_jax.analysis.report runs/fmnist_settings --out results/fmnist_settings

# (g) plasticity on Fashion-MNIST task streams: 2 streams × 6 methods × 5 seeds × 200 tasks.
python results/plasticity_stream.py --out results/plasticity
