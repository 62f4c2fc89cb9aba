"""Install, removal, extra-alarm and provider-change orders with their steps and timeline

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 13:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'orders',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=24), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=True),
        sa.Column('state', sa.String(length=24), nullable=False),
        sa.Column('received_at', core.db.UTCDateTime(), nullable=False),
        sa.Column('created_at', core.db.UTCDateTime(), nullable=False),
        sa.Column('created_by', sa.String(length=200), nullable=False),
        sa.Column('provider_code', sa.String(length=64), nullable=True),
        sa.Column('details', sa.JSON(), nullable=False),
        sa.Column('closed_at', core.db.UTCDateTime(), nullable=True),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id']),
        sa.ForeignKeyConstraint(['site_id'], ['sites.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_orders_customer_id', 'orders', ['customer_id'])
    op.create_index('ix_orders_state', 'orders', ['state'])
    op.create_table(
        'order_steps',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('order_id', sa.Integer(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('step', sa.String(length=32), nullable=False),
        sa.Column('owner', sa.String(length=24), nullable=False),
        sa.Column('due_at', core.db.UTCDateTime(), nullable=True),
        sa.Column('done_at', core.db.UTCDateTime(), nullable=True),
        sa.Column('done_by', sa.String(length=200), nullable=True),
        sa.Column('details', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['order_id'], ['orders.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_order_steps_order_id', 'order_steps', ['order_id'])
    op.create_index('ix_order_steps_open_due', 'order_steps', ['due_at'],
                    sqlite_where=sa.text('done_at IS NULL'),
                    postgresql_where=sa.text('done_at IS NULL'))
    op.create_table(
        'order_timeline',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('order_id', sa.Integer(), nullable=False),
        sa.Column('at', core.db.UTCDateTime(), nullable=False),
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.Column('action', sa.String(length=32), nullable=False),
        sa.Column('step', sa.String(length=32), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['order_id'], ['orders.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_order_timeline_order_id', 'order_timeline', ['order_id'])


def downgrade() -> None:
    op.drop_table('order_timeline')
    op.drop_table('order_steps')
    op.drop_table('orders')
