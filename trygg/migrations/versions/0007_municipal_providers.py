"""Providers: the municipality's own home care, or a private provider

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 13:30:00

A private day provider keeps two key sets and hands one to the night patrol (004 §8.1).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('providers') as batch_op:
        batch_op.add_column(sa.Column('municipal', sa.Boolean(), nullable=False,
                                      server_default=sa.text('false')))


def downgrade() -> None:
    with op.batch_alter_table('providers') as batch_op:
        batch_op.drop_column('municipal')
