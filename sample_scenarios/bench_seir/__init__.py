"""``bench-seir``: the benchmark SEIR model of DESIGN.md §5, like for like with the peers (Starsim, Covasim).

SEIR on households + schools + workplaces + community (about 19 contacts per agent per day),
β = 0.016 per contact per day, latent lognormal 4.5 ± 1.5 d, infectious lognormal 8 ± 2 d, one initial
infection per 10,000 agents (at least 10), no deaths. ``--set network=well-mixed`` puts everyone in one
place with the same mean number of contacts, the known-answer case of the final-size equation.
``--set population=nyc|nz|classroom`` runs the same disease on a census-based synthetic population (its
households, schools, workplaces and community places, with the benchmark's contact numbers), built or
loaded from the population cache.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from populace import Choice, Contacts, Model, Param, Places, RandomStreams, Scenario, Shard
from populace.layers import SEIR
from populace.layers.seir import BETA, INFECTIOUS_MEAN, INFECTIOUS_SD, LATENT_MEAN, LATENT_SD
from populace.people import Residents
from populace.synth.recipes import PopulationRecipe, find_recipe, load_population

from .population import (
    COMMUNITY_CONTACTS,
    SCHOOL_CONTACTS,
    WORK_CONTACTS,
    People,
    build_people,
)

__all__ = ["BenchSEIR", "People", "build_people"]

WELL_MIXED_CONTACTS = Param(
    19.0,
    (0.1, 1000.0),
    "contacts/day",
    doc="Contacts per agent per day in the well-mixed variant; 19 is the mean total of "
    "the structured network (households 2.67, school ~2.1, work ~4.3, community 10).",
)


class BenchSEIR(Scenario):
    name = "bench-seir"
    summary = "Benchmark SEIR on households, schools, workplaces and community (DESIGN.md §5)"
    default_agents = 100_000
    default_days = 100
    shardable = True

    @classmethod
    def options(cls) -> dict[str, Param | Choice]:
        return {
            "population": Choice(
                "synthetic",
                ("synthetic", "nyc", "nz", "classroom"),
                "who: the benchmark's own synthetic population, or a census-based one (scaled to --agents)",
            ),
            "network": Choice(
                "households",
                ("households", "well-mixed"),
                "contact structure: households+school+work+community, or everyone in one place",
            ),
            "beta": BETA,
            "latent_mean": LATENT_MEAN,
            "latent_sd": LATENT_SD,
            "infectious_mean": INFECTIOUS_MEAN,
            "infectious_sd": INFECTIOUS_SD,
            "well_mixed_contacts": WELL_MIXED_CONTACTS,
            "seeds_per_10k": Param(
                1.0,
                (0.0, 10_000.0),
                "agents per 10,000",
                doc="initial infections per 10,000 agents (at least 10); DESIGN.md §5",
            ),
        }

    def build(
        self,
        agents: int,
        options: Mapping[str, Param | Choice],
        *,
        seed: int,
        device: torch.device | str,
        shard: Shard | None = None,
    ) -> Model:
        opts = dict(options)
        streams = RandomStreams(seed, device)
        starts = None  # where households begin (a split population keeps them whole)
        if opts["network"].value == "well-mixed":
            everyone = torch.zeros(agents, dtype=torch.int32, device=streams.device)
            contacts = [Places("everyone", everyone, contacts=float(opts["well_mixed_contacts"].value))]
        else:
            if opts["population"].value != "synthetic":
                recipe = find_recipe(str(opts["population"].value))()
                people: People | Residents = load_population(recipe, agents, seed).people.to(streams.device)
            else:
                people = build_people(agents, streams)
            contacts = _settings(people)
            starts = _household_starts(people.household)
            del people
        if shard is not None:
            shard.divide(agents, starts)
            contacts = [c.shard(shard) for c in contacts]
        seeds = max(10, round(agents * float(opts["seeds_per_10k"].value) / 10_000))
        seir = SEIR(
            agents if shard is None else shard.size,
            contacts,
            initial_infections=min(seeds, agents),
            beta=_param(opts["beta"]),
            latent_mean=_param(opts["latent_mean"]),
            latent_sd=_param(opts["latent_sd"]),
            infectious_mean=_param(opts["infectious_mean"]),
            infectious_sd=_param(opts["infectious_sd"]),
        )
        return Model([seir])

    def recipe(self, options: Mapping[str, Param | Choice]) -> PopulationRecipe | None:
        """The census-based recipe, or ``None`` for the synthetic population (it has no homes on a map) and
        the well-mixed network."""
        if options["network"].value == "well-mixed" or options["population"].value == "synthetic":
            return None
        return find_recipe(str(options["population"].value))()


def _household_starts(household: torch.Tensor) -> torch.Tensor:
    """``bool[agents]``: where a household begins (agents are stored household by household)."""
    starts = torch.ones_like(household, dtype=torch.bool)
    starts[1:] = household[1:] != household[:-1]
    return starts


def _settings(people: People | Residents) -> list[Contacts]:
    """The benchmark's four settings on any population with household, school, work and community places."""
    return [
        Places("household", people.household),
        Places("school", people.school, contacts=SCHOOL_CONTACTS),
        Places("work", people.work, contacts=WORK_CONTACTS),
        Places("community", people.community, contacts=COMMUNITY_CONTACTS),
    ]


def _param(option: Param | Choice) -> Param:
    assert isinstance(option, Param)
    return option
