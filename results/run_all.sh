#!/bin/sh
# Reproduces results/ on CPU (commands as run for results/README.md). Run from the repository root;
# points already finished (summary.json present) are skipped, interrupted ones resume.
set -e
export PYTHONPATH=.
L="--config.progress=off"

# (a) synthetic task [LW] §1.1, 100 seeds per cell: α × 6 methods; L2 penalty (BL, LW) × α;
# LW + L2 with idle_norm_policy=skip; rescaling only.
python launch.py --config=configs/synthetic.py:seeds=100 --workdir=runs/synthetic_main_100 --sweep=list $L | results/run_points.sh
python launch.py --config=configs/synthetic.py:seeds=100,grid=rescale --workdir=runs/synthetic_rescale_100 --sweep=list $L | results/run_points.sh
python launch.py --config=configs/synthetic.py:seeds=100,grid=l2 --workdir=runs/synthetic_l2_100 --sweep=list $L | results/run_points.sh
python launch.py --config=configs/synthetic.py:seeds=100,grid=l2 --workdir=runs/synthetic_l2_skip_100 --sweep=list $L --config.idle_norm_policy=skip | grep layerwise | results/run_points.sh

# (b) online learning, Fashion-MNIST, without / with regularization.
python launch.py --config='configs/online.py:train_subset=2000,epochs=10,batch_size=32,learning_rate=0.05,eval_every_epochs=0,model_kwargs.width=0.125,seeds=(0;1;2)' --workdir=runs/online_s3 --sweep=list $L | results/run_points.sh
python launch.py --config='configs/online.py:train_subset=2000,epochs=50,batch_size=32,learning_rate=0.05,eval_every_epochs=0,model_kwargs.width=0.125,seeds=(0;1;2)' --workdir=runs/online_long --sweep=list $L | results/run_points.sh

# (c) label noise q ∈ {0, 0.4}, Fashion-MNIST, ± distillation.
python launch.py --config='configs/label_noise.py:train_subset=1500,epochs=6,stages=3,batch_size=32,learning_rate=0.05,model_kwargs.width=0.125,seeds=(0;1;2)' --workdir=runs/label_noise_s3 --sweep=list $L | results/run_points.sh

# (d) [HR] initialization diagnostics of every model (tiny conv nets on CPU).
python results/make_init_diagnostics.py --out results/init_diagnostics

# Reports (tables + PNGs) and pivot tables.
python -m reinit_jax.analysis.report runs/synthetic_main_100 --out results/synthetic
python -m reinit_jax.analysis.report runs/synthetic_l2_100 --out results/synthetic_l2
python -m reinit_jax.analysis.report runs/synthetic_rescale_100 runs/synthetic_main_100 --out results/synthetic_rescale
python -m reinit_jax.analysis.report runs/online_s3 --out results/online
python -m reinit_jax.analysis.report runs/online_long --out results/online_long
python -m reinit_jax.analysis.report runs/label_noise_s3 --out results/label_noise
python results/tables.py runs/synthetic_main_100 runs/synthetic_rescale_100 --row synthetic_alpha --col method
python results/tables.py runs/synthetic_l2_100 --row synthetic_alpha,method --col weight_decay
python results/tables.py runs/synthetic_l2_skip_100 --row synthetic_alpha,method --col weight_decay
python results/tables.py runs/online_s3 --row augmentation --col method --stages
python results/tables.py runs/online_long --row augmentation --col method --stages
python results/tables.py runs/label_noise_s3 --row label_noise --col method
