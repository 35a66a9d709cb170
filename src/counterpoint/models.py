"""Imports every table module so that ``Base.metadata`` knows the whole schema."""

from counterpoint.consent import models as consent_models
from counterpoint.event import models as event_models
from counterpoint.policy import models as policy_models
from counterpoint.profile import models as profile_models

__all__ = ["consent_models", "event_models", "policy_models", "profile_models"]
