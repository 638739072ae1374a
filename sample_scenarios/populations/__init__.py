"""Synthetic-population recipes (entry points of the ``populace.populations`` group): ``nyc``, ``nz``,
``classroom``. Build one with ``populace population build NAME`` or
:func:`populace.synth.recipes.load_population`."""
