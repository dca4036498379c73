"""ImageNet (imagenet2012, streamed with tf.data) with ResNet-18 at 224×224, [LW]-style.

    python launch.py --config=configs/imagenet_resnet18.py:method=layerwise,stages=4,num_blocks=4 --config.distributed=True

Streams batches (augmented on the host with lw224: flip, resize 248, random 224 crop); distillation
must be live here (no per-example cache). Needs imagenet2012 prepared in TFDS. Writes the usual
outputs; test accuracy is on ImageNet's validation split at best held-out validation accuracy.
"""

from reinit_jax.train.defaults import base_config, parse_overrides


def get_config(arg=None):
  c = base_config()
  c.name = "imagenet_resnet18"
  c.dataset = "imagenet2012"
  c.model = "resnet18"
  c.model_kwargs = {"input_shape": (224, 224, 3)}
  c.augmentation = "lw224"
  c.image_size = 224
  c.batch_size = 256
  c.epochs = 90
  c.stages = 3
  c.learning_rate = 0.1
  c.schedule = "cosine_per_stage"
  c.weight_decay = 1e-4
  c.method = "shrink_perturb"
  c.distill_live = True
  c.eval_every_epochs = 1
  c.validation_fraction = 0.01
  return parse_overrides(c, arg)
