"""Call chains and escalation on the alarm, kvittering kinds, visit reasons, coordinators

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 15:00:00

The chain is copied onto the alarm when the call-out starts (Grafana OnCall's snapshot),
and every scheduled step carries the token it was scheduled under (issue 9).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

_PENDING = "fired_at IS NULL AND cancelled_at IS NULL"
_ALARM_COLUMNS = (
    ('provider_code', sa.String(64)),
    ('also_teams', sa.JSON()),
    ('chain', sa.JSON()),
    ('call_step', sa.Integer()),
    ('call_token', sa.String(36)),
    ('escalation_token', sa.String(36)),
    ('no_answer_at', core.db.UTCDateTime()),
    ('coordinator_at', core.db.UTCDateTime()),
    ('red_flag_at', core.db.UTCDateTime()),
    ('on_way_at', core.db.UTCDateTime()),
    ('kvittering', sa.String(16)),
    ('visit_reason', sa.Text()),
    ('handed_over_at', core.db.UTCDateTime()),
)


def upgrade() -> None:
    with op.batch_alter_table('providers') as batch_op:
        batch_op.add_column(sa.Column('coordinator_name', sa.String(200), nullable=True))
        batch_op.add_column(sa.Column('coordinator_phone', sa.String(64), nullable=True))
    with op.batch_alter_table('alarms') as batch_op:
        for name, type_ in _ALARM_COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
    op.create_index('ix_alarms_received_at', 'alarms', ['received_at'])
    # Alarms from before: the provider of their team, and how they were confirmed.
    op.execute("UPDATE alarms SET provider_code = (SELECT p.code FROM teams t JOIN "
               "providers p ON p.id = t.provider_id WHERE t.id = alarms.team_id) "
               "WHERE team_id IS NOT NULL")
    op.execute("UPDATE alarms SET kvittering = 'unit' WHERE on_site_at IS NOT NULL")
    op.execute("UPDATE alarms SET kvittering = 'phone' WHERE on_site_at IS NULL "
               "AND closed_via = 'phone'")
    with op.batch_alter_table('deadlines') as batch_op:
        batch_op.add_column(sa.Column('step', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('token', sa.String(36), nullable=True))
    op.create_index('ix_deadlines_due', 'deadlines', ['due_at'],
                    sqlite_where=sa.text(_PENDING), postgresql_where=sa.text(_PENDING))
    # A reminder pending from before is the first step of the new chain: kept, and
    # carried out as the escalation chain's reminder step.
    op.execute("UPDATE deadlines SET kind = 'escalation', step = 0 WHERE kind = 'reminder' "
               "AND fired_at IS NULL AND cancelled_at IS NULL")


def downgrade() -> None:
    op.execute("UPDATE deadlines SET kind = 'reminder' WHERE kind = 'escalation' "
               "AND fired_at IS NULL AND cancelled_at IS NULL")
    op.execute("UPDATE deadlines SET cancelled_at = due_at WHERE kind IN "
               "('call_step', 'handover') AND fired_at IS NULL AND cancelled_at IS NULL")
    op.drop_index('ix_deadlines_due', table_name='deadlines')
    op.drop_index('ix_alarms_received_at', table_name='alarms')
    # Columns dropped in place (SQLite 3.35+ and PostgreSQL both can): a batch copy of
    # alarms or providers would drop a table that other tables' foreign keys point to.
    for table, names in (('deadlines', ('token', 'step')),
                         ('alarms', tuple(name for name, _ in reversed(_ALARM_COLUMNS))),
                         ('providers', ('coordinator_phone', 'coordinator_name'))):
        for name in names:
            op.execute(f"ALTER TABLE {table} DROP COLUMN {name}")
