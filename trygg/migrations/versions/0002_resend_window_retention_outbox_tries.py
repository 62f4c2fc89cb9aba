"""Remember resends only within a window, let retention delete events, give the outbox tries

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 07:00:00

- device_events: the idempotency key is no longer unique (a key seen again after the
  resend window is a new message); `last_seen_at` is where the window starts, and
  (idempotency_key, last_seen_at) makes the look-up a range scan; received_at is
  indexed for retention.
- alarms.source_event_id and presence_records.event_id keep the id of the event that
  caused them, but no longer a foreign key: retention deletes old events, never alarms.
- maintenance_marks: how far a background job has got.
- outbox: each message carries an id a team app can drop repeats by; a message that
  cannot be sent is set aside after a few tries instead of holding up the rest.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

# Names for the constraints 0001 left unnamed, so SQLite's batch mode can find them.
NAMING = {
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
}


def _drop_fk(table: str, column: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(table, naming_convention=NAMING, recreate="always") as b:
            b.drop_constraint(f"fk_{table}_{column}_device_events", type_="foreignkey")
    else:
        op.drop_constraint(f"{table}_{column}_fkey", table, type_="foreignkey")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    _drop_fk("alarms", "source_event_id")
    _drop_fk("presence_records", "event_id")

    with op.batch_alter_table('device_events', naming_convention=NAMING) as b:
        b.add_column(sa.Column('last_seen_at', core.db.UTCDateTime(), nullable=True))
    op.execute("UPDATE device_events SET last_seen_at = received_at")
    with op.batch_alter_table('device_events', naming_convention=NAMING,
                              recreate="always" if sqlite else "auto") as b:
        b.alter_column('last_seen_at', existing_type=core.db.UTCDateTime(), nullable=False)
        b.drop_constraint(
            "uq_device_events_idempotency_key" if sqlite else "device_events_idempotency_key_key",
            type_="unique")
    with op.batch_alter_table('device_events') as b:
        b.create_index('ix_device_events_key_seen', ['idempotency_key', 'last_seen_at'])
        b.create_index('ix_device_events_received_at', ['received_at'])

    op.create_table('maintenance_marks',
                    sa.Column('name', sa.String(length=64), nullable=False),
                    sa.Column('value', sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint('name'))

    with op.batch_alter_table('outbox') as b:
        b.add_column(sa.Column('message_id', sa.String(length=36), nullable=True))
        b.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        b.add_column(sa.Column('failed_at', core.db.UTCDateTime(), nullable=True))
        b.add_column(sa.Column('last_error', sa.Text(), nullable=True))
        b.drop_index('ix_outbox_unsent', sqlite_where=sa.text('sent_at IS NULL'),
                     postgresql_where=sa.text('sent_at IS NULL'))
        b.create_index('ix_outbox_unsent', ['id'],
                       sqlite_where=sa.text('sent_at IS NULL AND failed_at IS NULL'),
                       postgresql_where=sa.text('sent_at IS NULL AND failed_at IS NULL'))


def downgrade() -> None:
    with op.batch_alter_table('outbox') as b:
        b.drop_index('ix_outbox_unsent')
        b.create_index('ix_outbox_unsent', ['id'], sqlite_where=sa.text('sent_at IS NULL'),
                       postgresql_where=sa.text('sent_at IS NULL'))
        b.drop_column('last_error')
        b.drop_column('failed_at')
        b.drop_column('attempts')
        b.drop_column('message_id')
    op.drop_table('maintenance_marks')
    with op.batch_alter_table('device_events') as b:
        b.drop_index('ix_device_events_received_at')
        b.drop_index('ix_device_events_key_seen')
        b.drop_column('last_seen_at')
        b.create_unique_constraint('uq_device_events_idempotency_key', ['idempotency_key'])
    for table, column in (("alarms", "source_event_id"), ("presence_records", "event_id")):
        with op.batch_alter_table(table) as b:
            b.create_foreign_key(f"fk_{table}_{column}_device_events", 'device_events',
                                 [column], ['id'])
