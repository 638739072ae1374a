"""Synthetic populations from census data (``populace.synth``): not the engine, but what feeds it agents.

* :mod:`~populace.synth.stages` — the generic building blocks: iterative proportional fitting, rounding to
  whole people, households, schools and groups, commuting, workplace sizes;
* :mod:`~populace.synth.geography` — named areas as polygons, and uniform points inside them;
* :mod:`~populace.synth.pipeline` — :func:`~populace.synth.pipeline.synthesize`: a region's residents from
  its census marginals (a :class:`~populace.synth.pipeline.RegionSpec`), built from those stages;
* :mod:`~populace.synth.recipes` — :class:`~populace.synth.recipes.PopulationRecipe` (found through the
  ``populace.populations`` entry-point group), the population cache and
  :func:`~populace.synth.recipes.load_population`.

Recipes for real places live with the scenarios (``populace.scenarios.populations``).
"""
