"""Hydra's sweep syntax → Optuna distributions.

    key: choice(a, b, c)  or  a,b,c        categorical
    key: range(3, 11)                       integers 3..10 (Hydra's range excludes the end); float steps → categorical
    key: interval(0.5, 2.0)                 float, uniform
    key: tag(log, interval(1e-4, 1e-2))     float, log-uniform
    key: tag(int, interval(3, 10))          integer (add `log` to the tags for log-uniform)
    key: 0.1                                not searched: passed to every trial as it is
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import CompactHydraException

ALLOWED = "choice(a,b,...), a,b,..., range(start,stop[,step]), interval(low,high), tag(log|int,...,interval(low,high))"
INTERVAL_TAGS = {"log", "int"}


class SweeperConfigError(CompactHydraException, ValueError):
    """A bad sweeper setting: Hydra prints its message alone, on one line."""


def parse(overrides: Iterable[str]) -> list[Override]:
    return OverridesParser.create().parse_overrides(list(overrides))


def _categorical(key: str, values: list):
    from optuna.distributions import CategoricalDistribution

    for v in values:
        if v is not None and not isinstance(v, (bool, int, float, str)):
            raise SweeperConfigError(f"search space {key}: choices must be numbers, strings, booleans or null, "
                                     f"got {v!r}")
    if not values:
        raise SweeperConfigError(f"search space {key}: empty choice")
    return CategoricalDistribution(list(values))


def to_distribution(override: Override):
    """The Optuna distribution of a sweep override (SweeperConfigError naming the accepted forms otherwise)."""
    from optuna.distributions import FloatDistribution, IntDistribution

    key, value = override.get_key_element(), override.value()
    if override.is_choice_sweep() and isinstance(value, (ChoiceSweep, list)):
        return _categorical(key, list(override.sweep_iterator()))
    if isinstance(value, RangeSweep):
        items = list(value.range())
        if not items:
            raise SweeperConfigError(f"search space {key}: range({value.start}, {value.stop}, {value.step}) is empty")
        if all(isinstance(v, int) for v in items) and value.step > 0:
            return IntDistribution(items[0], items[-1], step=int(value.step))
        return _categorical(key, items)
    if isinstance(value, IntervalSweep):
        unknown = set(value.tags) - INTERVAL_TAGS
        if unknown:
            raise SweeperConfigError(f"search space {key}: unknown tag(s) {sorted(unknown)}; allowed: log, int")
        low, high, log = value.start, value.end, "log" in value.tags
        if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
            raise SweeperConfigError(f"search space {key}: interval({low}, {high}) needs finite low < high")
        if log and low <= 0:
            raise SweeperConfigError(f"search space {key}: a log interval needs low > 0, got {low}")
        if "int" in value.tags:
            return IntDistribution(int(low), int(high), log=log)
        return FloatDistribution(float(low), float(high), log=log)
    raise SweeperConfigError(f"search space {key}: cannot search {override.input_line!r}; allowed: {ALLOWED}")


def split(overrides: list[Override]) -> tuple[dict, list[str]]:
    """({key: distribution} of the sweep overrides, the other overrides as strings)."""
    space, fixed = {}, []
    for o in overrides:
        if o.is_sweep_override():
            space[o.get_key_element()] = to_distribution(o)
        else:
            fixed.append(o.input_line)
    return space, fixed


_PLAIN = re.compile(r"^[A-Za-z0-9_./\-+:]+$")


def override_value(value) -> str:
    """A trial's value written back as the right-hand side of a Hydra override."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in ("null", "true", "false"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
