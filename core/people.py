"""Synthetic residents of a real (or classroom) region: the population type the scenarios share."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .population import Population, column

__all__ = ["Residents"]


@dataclass
class Residents(Population):
    """People living in small areas of a region; 32 bytes per agent.

    Agents are stored household by household (a household's members are consecutive), households area by
    area, so the household and community kernels read memory in order.
    """

    area: Tensor = column(torch.int16, "small area of the home (index into the recipe's areas)")
    region: Tensor = column(torch.uint8, "region of the home: borough, regional council (index)")
    age: Tensor = column(torch.uint8, "age in whole years")
    sex: Tensor = column(torch.uint8, "0 female, 1 male")
    ethnicity: Tensor = column(torch.uint8, "index into the recipe's ethnicities (0 where not modelled)")
    household: Tensor = column(torch.int32, "household index (consecutive agents)")
    school: Tensor = column(torch.int32, "school index, -1 if not at school")
    work: Tensor = column(torch.int32, "workplace index, -1 if not working")
    work_area: Tensor = column(torch.int16, "small area of the workplace, -1 if not working")
    community: Tensor = column(torch.int32, "community (neighbourhood) place index")
    x: Tensor = column(torch.float32, "home x in Web Mercator metres (EPSG:3857)")
    y: Tensor = column(torch.float32, "home y in Web Mercator metres (EPSG:3857)")
