"""Option types the commands share."""

from __future__ import annotations

import math

import click


class FiniteRange(click.FloatRange):
    """click.FloatRange that refuses nan (every comparison with nan is false, so a range lets it through)
    and the infinities."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number
