"""identity evidence from page, screen and group calls is stored as track evidence

Such calls naming both a user and an anonymous id were stored with their call kind as the
source, which identity resolution does not know: a component holding one could not be
resolved. They are the same evidence as a track call's.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        sa.text(
            "UPDATE identity_observation SET source = 'track' "
            "WHERE source IN ('page', 'screen', 'group')"
        )
    )


def downgrade() -> None:
    # The call kinds are not kept; track is what they mean, so nothing is undone.
    pass
