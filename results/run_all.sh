#!/bin/sh
# Reproduces results/ on CPU (commands as run for results/README.md). Run from the repository root;
# points already finished (summary.json present) are skipped, interrupted ones resume.
set -e
export PYTHONPATH=.
L="--config.progress=off"

# (a) synthetic task [LW] §1.1: α × 6 methods; L2 penalty on the baseline (α = 1); rescaling only.
python launch.py --config=configs/synthetic.py:seeds=10 --workdir=runs/synthetic_main --sweep=list $L | results/run_points.sh
python launch.py --config=configs/synthetic.py:seeds=10,grid=l2 --workdir=runs/synthetic_l2 --sweep=list $L | grep 'alpha=1.0,' | grep -v 'method=layerwise,l2=0.0 ' | results/run_points.sh
python launch.py --config=configs/synthetic.py:seeds=10,grid=rescale --workdir=runs/synthetic_rescale --sweep=list $L | results/run_points.sh

# (b) online learning, Fashion-MNIST, without / with regularization.
python launch.py --config='configs/online.py:train_subset=2000,epochs=10,batch_size=32,learning_rate=0.05,eval_every_epochs=0,model_kwargs.width=0.125,seeds=(0;1)' --workdir=runs/online --sweep=list $L | results/run_points.sh

# (c) label noise q ∈ {0, 0.4}, Fashion-MNIST, ± distillation.
python launch.py --config='configs/label_noise.py:train_subset=1500,epochs=6,stages=3,batch_size=32,learning_rate=0.05,model_kwargs.width=0.125' --workdir=runs/label_noise --sweep=list $L | results/run_points.sh

# (d) [HR] initialization diagnostics of every SPEC §4 model (tiny conv nets on CPU).
python results/make_init_diagnostics.py --out results/init_diagnostics

# Reports (tables + PNGs) and pivot tables.
python -m reinit_jax.analysis.report runs/synthetic_main --out results/synthetic
python -m reinit_jax.analysis.report runs/synthetic_l2 --out results/synthetic_l2
python -m reinit_jax.analysis.report runs/synthetic_rescale runs/synthetic_main --out results/synthetic_rescale
python -m reinit_jax.analysis.report runs/online --out results/online
python -m reinit_jax.analysis.report runs/label_noise --out results/label_noise
python results/tables.py runs/synthetic_main runs/synthetic_rescale --row synthetic_alpha --col method
python results/tables.py runs/synthetic_l2 --row synthetic_alpha --col weight_decay
python results/tables.py runs/online --row augmentation --col method --stages
python results/tables.py runs/label_noise --row label_noise --col method
