"""The Populace Explorer (``populace.explorer``): the Panel app and notebook widgets.

Not built yet (its own issue); the package exists so the layout and packaging are final. ``core`` never
imports it.
"""
