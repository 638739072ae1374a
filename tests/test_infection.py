"""The infection core (layers/infection.py): one transmission for every disease, estimators as objects,
modifiers wired by the model, names checked when the model is built."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from populace import (
    Gumbel,
    Layer,
    Model,
    Places,
    Sellke,
    Simulation,
    Smoothed,
    StepContext,
    find_scenario,
    parse_sets,
)
from populace.calibrate import legacy_name, load_parameters
from populace.layers import SEIR, SEIRState
from populace.layers.npi import MASK_ADOPTION, Masks
from populace.params import ParamError

N = 40_000


def _seir(n: int = N, **kwargs: object) -> SEIR:
    everyone = Places("everyone", torch.zeros(n, dtype=torch.int32), contacts=10.0)
    return SEIR(n, [everyone], initial_infections=40, **kwargs)  # type: ignore[arg-type]


def _ad_and_fd(model: Model, days: int, seed: int, h: float = 0.1) -> tuple[float, float]:
    """d(infections by ``days``)/dβ by autodiff, and by central differences with common random numbers."""
    beta = model.layer("seir").beta
    base = float(beta.detach())
    Simulation(model, seed=seed, grad="full").run(days).series["new_infections"].sum().backward()
    ad = float(beta.grad)
    values = []
    for sign in (1, -1):
        with torch.no_grad():
            beta.fill_(base * (1 + sign * h))
            values.append(float(Simulation(model, seed=seed).run(days).series["new_infections"].sum()))
            beta.fill_(base)
    return ad, (values[0] - values[1]) / (2 * h * base)


def test_seir_sellke_gradient_matches_finite_differences() -> None:
    """SEIR takes the Sellke estimator like Covid: well mixed, 40,000 agents, d(infections by day 30)/dβ,
    the mean over seeds 3-6 by autodiff against the mean central difference (one seed's difference is noisy:
    measured 21,000-46,000 for these seeds, AD 27,000-34,000; means 30,469 and 32,187)."""
    pairs = [_ad_and_fd(Model([_seir(estimator=Sellke())]), days=30, seed=seed) for seed in (3, 4, 5, 6)]
    ad, fd = (sum(p[i] for p in pairs) / len(pairs) for i in (0, 1))
    assert 0.85 < ad / fd < 1.15, pairs


def test_estimators_are_objects_with_their_modes() -> None:
    assert not Sellke.forward_mode
    assert Gumbel.forward_mode
    assert Smoothed.forward_mode
    with pytest.raises(TypeError, match="estimator: expected an Estimator object"):
        _seir(estimator="gumbel")
    with pytest.raises(ValueError, match="tau"):
        Gumbel(tau=0.0)


def test_seir_takes_interventions_through_the_model() -> None:
    """A mask modifier in the same model acts on SEIR (no second registration): fewer infections."""
    days = 40

    def infections(masks: bool) -> int:
        layers: list[Layer] = [_seir(10_000)]
        if masks:  # everyone wears a mask (efficacy 0.3 by default)
            layers.append(Masks(10_000, settings=("everyone",), adoption=replace(MASK_ADOPTION, value=1.0)))
        with torch.no_grad():
            return int(Simulation(Model(layers), seed=1).run(days).series["new_infections"].sum())

    assert infections(masks=True) < 0.8 * infections(masks=False)


def test_names_are_checked_when_the_model_is_built() -> None:
    with pytest.raises(ValueError, match="'shcool' is not a setting of seir"):
        Model([_seir(1_000), Masks(1_000, settings=("shcool",))])
    with pytest.raises(ValueError, match="two layers are named 'seir'"):
        Model([_seir(1_000), _seir(1_000)])
    with pytest.raises(ValueError, match="not a valid layer name"):
        Model({"my disease": _seir(1_000)})
    with pytest.raises(ValueError, match="reserved name"):
        Model({"layers": _seir(1_000)})


def test_two_populations_draw_from_their_own_streams() -> None:
    """Two SEIR layers named by the scenario draw from their own streams (namespaced by layer name)."""
    model = Model({"town": _seir(2_000, prefix="town_"), "city": _seir(2_000, prefix="city_")})
    assert {n.split(".")[0] for n, _ in model.named_parameters()} == {"town", "city"}
    with torch.no_grad():
        sim = Simulation(model, seed=0)
    town, city = sim.states
    assert not torch.equal(town.threshold, city.threshold)


def test_parameters_written_before_names_are_read_or_refused() -> None:
    model = Model([_seir(1_000)])
    assert legacy_name(model, "layers.0.beta") == "seir.beta"
    assert legacy_name(model, "layers.0.contacts.0.weight") == "seir.settings.everyone.weight"
    load_parameters(model, {"layers.0.contacts.0.weight": 2.0})
    assert float(model.layer("seir").settings["everyone"].weight.detach()) == 2.0
    with pytest.raises(ParamError, match=r"written before layers had names; read as 'seir\.severe_scale'"):
        load_parameters(model, {"layers.0.severe_scale": 2.0})
    with pytest.raises(ParamError, match="only 1 layers"):
        load_parameters(model, {"layers.3.beta": 2.0})


def test_a_misspelt_stream_fails_at_its_first_draw() -> None:
    """Streams are declared by layers (``stream_names``); a draw from any other name is refused, naming the
    near miss, instead of silently drawing numbers of its own."""

    class Typo(SEIR):
        def stream_names(self) -> tuple[str, ...]:
            return ("threshold", "seeds", "latent", "infectious")

        def init_state(self, ctx: StepContext) -> SEIRState:
            ctx.streams.uniform(f"{self.name}.treshold", 3)
            return super().init_state(ctx)

    model = Model(
        [Typo(1_000, [Places("everyone", torch.zeros(1_000, dtype=torch.int32))], initial_infections=1)]
    )
    assert "seir.threshold" in model.stream_names()
    with pytest.raises(
        LookupError,
        match=r"'seir\.treshold' is not declared by any layer of the model \(did you mean 'seir\.threshold'",
    ):
        Simulation(model, seed=0)
    for scenario in ("nyc-covid",):  # every stream a scenario's layers draw from is declared
        cls = find_scenario(scenario)
        sets = [
            "test_type=antigen",
            "screening=0.01",
            "vaccination=on",
            "vaccine_start=0",
            "mask_adoption=0.5",
        ]
        with torch.no_grad():
            Simulation(cls().build(3_000, parse_sets(cls, sets), seed=0, device="cpu"), seed=0).run(30)
