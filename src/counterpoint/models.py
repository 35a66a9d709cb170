"""Imports every table module so that ``Base.metadata`` knows the whole schema."""

from counterpoint.channel import models as channel_models  # noqa: F401
from counterpoint.consent import models as consent_models
from counterpoint.content import models as content_models  # noqa: F401
from counterpoint.delivery import models as delivery_models  # noqa: F401
from counterpoint.event import models as event_models
from counterpoint.journey import models as journey_models  # noqa: F401
from counterpoint.policy import models as policy_models
from counterpoint.policy import policy_models as contact_policy_models
from counterpoint.privacy import models as privacy_models  # noqa: F401
from counterpoint.profile import models as profile_models
from counterpoint.segment import models as segment_models  # noqa: F401
from counterpoint.transparency import models as transparency_models  # noqa: F401

__all__ = [
    "consent_models",
    "contact_policy_models",
    "event_models",
    "policy_models",
    "profile_models",
]
