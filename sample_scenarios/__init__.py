"""Ready-made scenarios (``populace.scenarios``), each registered as a ``populace.scenarios`` entry point."""
