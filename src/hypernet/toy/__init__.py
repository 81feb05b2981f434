"""The embedded toy model: a scaled-down Stable Diffusion trained on a synthetic world
of coloured shapes, shipped inside the package so the project works on a fresh clone,
offline, on a CPU. Importing this package loads nothing heavy."""
