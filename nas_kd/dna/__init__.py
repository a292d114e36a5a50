"""DNA-style blockwise supervision: per-stage training against the teacher, per-stage candidate tables,
and the exact search over the whole space that additive stage scores allow."""
