"""Technical alarms, incidents, supervision intervals, help calls first in the inbox

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 09:30:00

- technical_alarms and their trail (technical_alarm_log): device faults with their own
  life; at most one open per device and kind (a partial unique index).
- incidents: many units of one area with one fault, shown as one; at most one open per
  kind and area.
- devices: their own supervision interval and tolerance (null: the model's or default).
- device_links.last_seen_at indexed: supervision asks who has been quiet since when.
- device_events: a partial index of the unprocessed help-call events, taken first.
- outbox.retain: availability messages are retained by the broker.
- gateway_links: the state of each of the gateway's links, for the dashboard.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

URGENT = "processed_at IS NULL AND kind IN ('alarm', 'check_in', 'check_out', 'cancelled')"
OPEN = "state = 'open'"
OWN = "supervision_interval_s IS NOT NULL OR supervision_tolerance_s IS NOT NULL"


def upgrade() -> None:
    op.create_table(
        'incidents',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('area_code', sa.String(length=64), nullable=False),
        sa.Column('state', sa.String(length=8), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('peak', sa.Integer(), nullable=False),
        sa.Column('opened_at', core.db.UTCDateTime(), nullable=False),
        sa.Column('closed_at', core.db.UTCDateTime(), nullable=True),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('uq_incidents_open', 'incidents', ['kind', 'area_code'], unique=True,
                    sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN))
    op.create_table(
        'technical_alarms',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('cid', sa.String(length=32), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('state', sa.String(length=8), nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('area_code', sa.String(length=64), nullable=True),
        sa.Column('opened_at', core.db.UTCDateTime(), nullable=False),
        sa.Column('quiet_since', core.db.UTCDateTime(), nullable=True),
        sa.Column('cleared_at', core.db.UTCDateTime(), nullable=True),
        sa.Column('cleared_by', sa.String(length=200), nullable=True),
        sa.Column('clear_note', sa.Text(), nullable=True),
        sa.Column('source_event_id', sa.Integer(), nullable=True),
        sa.Column('incident_id', sa.Integer(), nullable=True),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['incident_id'], ['incidents.id']),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_technical_alarms_incident_id', 'technical_alarms', ['incident_id'])
    op.create_index('ix_technical_alarms_cid', 'technical_alarms', ['cid'])
    op.create_index('ix_technical_alarms_state', 'technical_alarms', ['state', 'opened_at'])
    op.create_index('uq_technical_alarms_open', 'technical_alarms', ['cid', 'kind'],
                    unique=True, sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN))
    op.create_table(
        'technical_alarm_log',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('technical_alarm_id', sa.Integer(), nullable=False),
        sa.Column('action', sa.String(length=32), nullable=False),
        sa.Column('at', core.db.UTCDateTime(), nullable=False),
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.Column('note', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['technical_alarm_id'], ['technical_alarms.id']),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_technical_alarm_log_technical_alarm_id', 'technical_alarm_log',
                    ['technical_alarm_id'])
    with op.batch_alter_table('devices') as b:
        b.add_column(sa.Column('supervision_interval_s', sa.Integer(), nullable=True))
        b.add_column(sa.Column('supervision_tolerance_s', sa.Integer(), nullable=True))
    op.create_index('ix_devices_own_supervision', 'devices', ['cid'],
                    sqlite_where=sa.text(OWN), postgresql_where=sa.text(OWN))
    op.create_index('ix_device_links_last_seen_at', 'device_links', ['last_seen_at'])
    op.create_index('ix_device_events_inbox_urgent', 'device_events', ['id'],
                    sqlite_where=sa.text(URGENT), postgresql_where=sa.text(URGENT))
    op.create_table(
        'gateway_links',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('since', core.db.UTCDateTime(), nullable=True),
        sa.Column('updated_at', core.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('name'))
    with op.batch_alter_table('outbox') as b:
        b.add_column(sa.Column('retain', sa.Boolean(), nullable=False,
                               server_default=sa.text('false')))


def downgrade() -> None:
    op.drop_table('gateway_links')
    with op.batch_alter_table('outbox') as b:
        b.drop_column('retain')
    op.drop_index('ix_device_events_inbox_urgent', 'device_events')
    op.drop_index('ix_device_links_last_seen_at', 'device_links')
    op.drop_index('ix_devices_own_supervision', 'devices')
    with op.batch_alter_table('devices') as b:
        b.drop_column('supervision_tolerance_s')
        b.drop_column('supervision_interval_s')
    op.drop_table('technical_alarm_log')
    op.drop_table('technical_alarms')
    op.drop_table('incidents')
