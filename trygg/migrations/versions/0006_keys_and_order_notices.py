"""Key sets with their holders' history and receipts; the notices orders send

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 13:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

LIVE = "returned_at IS NULL"


def upgrade() -> None:
    op.create_table(
        'key_sets',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('number', sa.String(length=32), nullable=False),
        sa.Column('holder', sa.String(length=24), nullable=False),
        sa.Column('holder_code', sa.String(length=64), nullable=True),
        sa.Column('created_at', core.db.UTCDateTime(), nullable=False),
        sa.Column('returned_at', core.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_key_sets_customer_id', 'key_sets', ['customer_id'])
    op.create_index('uq_key_sets_live_number', 'key_sets', ['customer_id', 'number'],
                    unique=True, sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE))
    op.create_table(
        'key_holdings',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key_set_id', sa.Integer(), nullable=False),
        sa.Column('holder', sa.String(length=24), nullable=False),
        sa.Column('holder_code', sa.String(length=64), nullable=True),
        sa.Column('at', core.db.UTCDateTime(), nullable=False),
        sa.Column('order_id', sa.Integer(), nullable=True),
        sa.Column('receipt', sa.String(length=64), nullable=True),
        sa.Column('received_by', sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(['key_set_id'], ['key_sets.id']),
        sa.ForeignKeyConstraint(['order_id'], ['orders.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_key_holdings_key_set_id', 'key_holdings', ['key_set_id'])
    op.create_table(
        'order_notices',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('order_id', sa.Integer(), nullable=False),
        sa.Column('recipient', sa.String(length=32), nullable=False),
        sa.Column('created_at', core.db.UTCDateTime(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['order_id'], ['orders.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_order_notices_order_id', 'order_notices', ['order_id'])


def downgrade() -> None:
    op.drop_table('order_notices')
    op.drop_table('key_holdings')
    op.drop_table('key_sets')
