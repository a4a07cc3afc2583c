"""Assert training dynamics in unit tests: helpers, live expectations and a pytest plugin.

Everything :mod:`probes.testing.assertions` and :mod:`probes.testing.expectations` export is
available here (each probe kind declares its own assertions and expectations in its package),
except the lookup functions ``assertion`` / ``assertions``, which stay in their module so that
``probes.testing.assertions`` remains the module.
"""

from probes.testing import assertions as _assertions
from probes.testing import expectations as _expectations
from probes.testing.collect import SourceData as SourceData
from probes.testing.collect import collect as collect

_LOOKUPS = {"assertion", "assertions"}
__all__ = sorted({*_assertions.__all__, *_expectations.__all__, "SourceData", "collect"} - _LOOKUPS)
for _module in (_assertions, _expectations):
    globals().update({name: getattr(_module, name) for name in _module.__all__ if name in __all__})
