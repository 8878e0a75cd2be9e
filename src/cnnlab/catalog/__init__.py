"""The catalogue: every name cnnlab knows (tasks, devices, precisions ...), the registries of layers,
optimisers, augmentations and loggers, and the Registry they share. Nothing here imports torch at
import time: the CLI lists and validates names without it; builders load lazily."""
