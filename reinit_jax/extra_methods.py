"""Methods used by the studies beyond SPEC §1's table, built from the same pieces.

``rescale_only`` is [LW] §1.1's ablation: at every event each weight tensor is rescaled to its norm
at the first initialization and nothing is re-initialized (θ_init gets no weight), so it isolates
the effect of resetting the norms from the effect of fresh weights.
"""

from reinit_jax import masks, methods


@methods.register("rescale_only", mask=lambda params, stage, key, context: masks.all_false(params))
def rescale_only(params, fresh, stage, key, context):
  """θ rescaled tensor-wise to θ_1's norms (zero-norm tensors such as biases are left as they are)."""
  del fresh, stage, key
  if context.init_norms is None:
    raise ValueError("rescale_only needs context.init_norms (methods.make_context records them)")
  return methods.rescale_to_norms(params, context.init_norms, masks.all_true(params))
