"""Admin for registries and profiles, plus read-only views of history and user selections.

Every write goes through `profiles.services`, exactly like the API: the forms call the service while
validating (see `profiles.forms`), deletes, "make default" and restores call it directly. The admin
never saves or deletes a registry's profiles itself, so it cannot bypass a rule, a version or the
default-profile invariant.

The admins live in `common` (their bases), `profiles`, `registries`, `release` (audit log, label
requests, rollouts) and `keys` (API keys); importing them here registers them.
"""

from .common import InspectOnlyAdmin, ServiceAdmin, ServiceFormAdmin, TimestampsAdmin
from .keys import ApiKeyAdmin
from .profiles import ProfileAdmin
from .registries import ProfileRevisionAdmin, ProfileSelectionAdmin, RegistryAdmin
from .release import AuditEventAdmin, LabelRequestAdmin, LabelRolloutAdmin

__all__ = [
    "ApiKeyAdmin",
    "AuditEventAdmin",
    "InspectOnlyAdmin",
    "LabelRequestAdmin",
    "LabelRolloutAdmin",
    "ProfileAdmin",
    "ProfileRevisionAdmin",
    "ProfileSelectionAdmin",
    "RegistryAdmin",
    "ServiceAdmin",
    "ServiceFormAdmin",
    "TimestampsAdmin",
]
