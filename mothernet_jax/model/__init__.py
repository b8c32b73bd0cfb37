"""The hypernetwork in JAX: its Flax Linen modules, one concept a file (encoders, transformer,
pooling, weight_head, mothernet, init), which config a parameter tree fits (identify), and what is
applied to the child it emits: the child in JAX (child: child_logits, predict_proba,
predict_regression; its arithmetic is runtime.child's), the read-out fitted in closed form
(read_out), and the reference's weights converted (convert)."""
