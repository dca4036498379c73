"""ImageNet (imagenet2012, streamed with tf.data) with ResNet-18 at 224×224, [LW]-style.

    python launch.py --config=configs/imagenet_resnet18.py:method=layerwise,stages=4,num_blocks=4 --config.run.distributed=True

Streams batches (augmented on the host with lw224: flip, resize 248, random 224 crop); distillation
must be live here (no per-example cache). Needs imagenet2012 prepared in TFDS. Writes the usual
outputs; test accuracy is on ImageNet's validation split at best held-out validation accuracy.
"""

from reinit_jax import launch


def get_config(arg=None):
  c = launch.base_config()
  c.name = "imagenet_resnet18"
  c.data.dataset = "imagenet2012"
  c.data.augmentation = "lw224"
  c.data.image_size = 224
  c.data.batch_size = 256
  c.data.validation_fraction = 0.01
  c.model.name = "resnet18"
  c.optim.epochs = 90
  c.optim.learning_rate = 0.1
  c.optim.schedule = "cosine_per_stage"
  c.optim.weight_decay = 1e-4
  c.reinit.stages = 3
  c.reinit.method = "shrink_perturb"
  c.reinit.distill_live = True
  c.run.eval_every_epochs = 1
  launch.apply(c, arg)
  return c
