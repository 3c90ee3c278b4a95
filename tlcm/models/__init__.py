"""Models around the distillation: the base diffusion model (teacher), students, aux networks."""
