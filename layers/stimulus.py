"""Stimulus payments: an amount paid once to the adults of chosen archetypes, entering their behaviour."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from populace.model import Layer, LayerState, Phase, StepContext
from populace.params import Choice, Param, register_params

__all__ = ["RECIPIENTS", "Stimulus", "StimulusState"]

AMOUNT = Param(
    500.0,
    (0.0, 100_000.0),
    "$ per adult",
    doc="Payment per adult recipient. The CARES Act (March 2020) paid $1,200 per adult and $500 per child; "
    "the December 2020 act $600.",
)
DAY = Param(30.0, (0.0, 10_000.0), "day", doc="Day of the payment (day index of the run).")
MEMORY_DAYS = Param(
    30.0,
    (1.0, 365.0),
    "days",
    doc="How long a payment counts as 'received' in the behaviour context. Assumed: most of the CARES Act "
    "payments were spent within a month (Baker et al. 2020, NBER w27097).",
)
RECIPIENTS = Choice(
    "low-income",
    ("low-income", "all"),
    "who is paid: adults of low-income households only, or every adult",
)


@dataclass
class StimulusState(LayerState):
    """State of :class:`Stimulus`: ``paid``: ``float64[]`` dollars paid today."""

    paid: torch.Tensor


class Stimulus(Layer):
    """Pays ``amount`` on ``day`` to each adult of the recipient archetypes; acts through behaviour
    (``Behaviour`` reads :meth:`received`), not on transmission.

    Args:
        adults: ``int64[archetypes]`` number of adult agents per archetype.
        low_income: ``bool[archetypes]``, low-income archetypes.
        recipients: ``"low-income"`` or ``"all"``.
        amount, day, memory_days: specs (defaults cited).
    """

    shardable = True

    phase = Phase.INTERVENTION
    amount: torch.Tensor
    day: torch.Tensor
    memory_days: torch.Tensor
    eligible: torch.Tensor
    adults: torch.Tensor

    def __init__(
        self,
        adults: torch.Tensor,
        low_income: torch.Tensor,
        *,
        recipients: str = RECIPIENTS.value,
        amount: Param = AMOUNT,
        day: Param = DAY,
        memory_days: Param = MEMORY_DAYS,
    ) -> None:
        super().__init__()
        RECIPIENTS.validate(recipients, "recipients")
        if adults.shape != low_income.shape:
            raise ValueError(
                f"adults and low_income: one entry per archetype, got {adults.shape}, {low_income.shape}"
            )
        eligible = low_income.clone() if recipients == "low-income" else torch.ones_like(low_income)
        self.recipients = recipients
        self.register_buffer("eligible", eligible, persistent=False)
        self.register_buffer("adults", adults.to(torch.float64), persistent=False)
        register_params(self, amount=amount, day=day, memory_days=memory_days)

    def observables(self) -> tuple[str, ...]:
        return ("cost_stimulus",)

    def received(self, day: int) -> torch.Tensor:
        """``float32[archetypes]`` dollars per adult received within the last ``memory_days``."""
        since = day - float(self.day)
        paid = 0 <= since < float(self.memory_days)
        return self.eligible.float() * (self.amount if paid else torch.zeros_like(self.amount))

    def init_state(self, ctx: StepContext) -> StimulusState:
        return StimulusState(paid=torch.zeros((), dtype=torch.float64, device=ctx.streams.device))

    def step(self, state: StimulusState, ctx: StepContext) -> StimulusState:
        today = ctx.day == round(float(self.day))
        total = (self.adults * self.eligible).sum() * self.amount.detach().double()
        state.paid = total if today else torch.zeros_like(state.paid)
        return state

    def observe(self, state: StimulusState) -> dict[str, torch.Tensor]:
        return {"cost_stimulus": state.paid.clone()}
