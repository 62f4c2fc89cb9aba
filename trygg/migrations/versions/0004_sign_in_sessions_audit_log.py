"""Personal sign-in, sessions and tokens, lock-out, the audit log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 12:10:00

- users: a password (argon2), a team for responders, disabled_at; the token moves out.
- credentials: sessions and API tokens (SHA-256 digests), each revocable; the users'
  existing tokens become API tokens, so scripts keep working across the upgrade.
- sign_in_failures: failed sign-ins, counted per user (name digest) and per address.
- audit_log: who viewed or changed what; append-only, enforced by the database.
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

import core.db

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

APPEND_ONLY = "the audit log is append-only"


def upgrade() -> None:
    # The users' tokens are read first and written into `credentials` only after `users`
    # is rebuilt: on SQLite the rebuild drops the table, which a credentials row pointing
    # at it would forbid (foreign keys are on).
    users = sa.table('users', sa.column('id'), sa.column('token_hash'),
                     sa.column('created_at', core.db.UTCDateTime()))
    tokens = op.get_bind().execute(
        sa.select(users.c.id, users.c.token_hash, users.c.created_at)).all()
    with op.batch_alter_table('users') as batch_op:
        batch_op.add_column(sa.Column('team_code', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('password_hash', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('disabled_at', core.db.UTCDateTime(), nullable=True))
        batch_op.drop_column('token_hash')
    credentials = op.create_table(
        'credentials',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', core.db.UTCDateTime(), nullable=False),
        sa.Column('last_used_at', core.db.UTCDateTime(), nullable=False),
        sa.Column('expires_at', core.db.UTCDateTime(), nullable=True),
        sa.Column('revoked_at', core.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token_hash'),
    )
    op.create_index('ix_credentials_user_id', 'credentials', ['user_id'])
    # Scripts keep working across the upgrade: each user's token becomes an API token.
    if tokens:
        op.bulk_insert(credentials, [
            {"user_id": uid, "kind": "token", "token_hash": digest, "created_at": created,
             "last_used_at": created} for uid, digest, created in tokens])

    op.create_table(
        'sign_in_failures',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name_digest', sa.String(length=64), nullable=False),
        sa.Column('address', sa.String(length=64), nullable=False),
        sa.Column('at', core.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_sign_in_failures_name', 'sign_in_failures', ['name_digest', 'at'])
    op.create_index('ix_sign_in_failures_address', 'sign_in_failures', ['address', 'at'])

    op.create_table(
        'audit_log',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('at', core.db.UTCDateTime(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('actor', sa.String(length=100), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=True),
        sa.Column('action', sa.String(length=48), nullable=False),
        sa.Column('subject_type', sa.String(length=32), nullable=True),
        sa.Column('subject_id', sa.String(length=64), nullable=True),
        sa.Column('address', sa.String(length=64), nullable=True),
        sa.Column('detail', sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_audit_log_at', 'audit_log', ['at'])
    op.create_index('ix_audit_log_action', 'audit_log', ['action'])
    op.create_index('ix_audit_log_subject', 'audit_log', ['subject_type', 'subject_id', 'at'])
    op.create_index('ix_audit_log_actor', 'audit_log', ['actor', 'at'])
    # Append-only in the database itself, not just in our code: a bug, a script or a
    # hand at the SQL prompt cannot quietly rewrite who looked at what.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END; $$ LANGUAGE plpgsql""")
        op.execute("CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
                   "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()")
        # TRUNCATE fires no row trigger: it gets a statement trigger of its own.
        op.execute("CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
                   "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()")
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                       f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END")


def downgrade() -> None:
    bind = op.get_bind()
    # Going back would throw the audit log away, and hand the roles 0003 does not know
    # (responder, tfh, alarm_manager) an operator's rights: refused once either exists.
    if bind.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one():
        raise RuntimeError("the audit log has entries: downgrading below 0004 would delete "
                           "it; export it (GET /api/audit?format=csv) and empty it by hand "
                           "first if you must")
    if bind.execute(sa.text("SELECT count(*) FROM users WHERE role NOT IN "
                            "('operator', 'admin')")).scalar_one():
        raise RuntimeError("users with roles 0003 does not know exist (responder, tfh, "
                           "alarm_manager): remove them or change their roles first")
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION audit_log_append_only()")
    op.drop_table('audit_log')
    op.drop_table('sign_in_failures')
    # One token per user comes back (the oldest live one; sessions cannot); a user
    # without one gets an unguessable digest, as 0003 needs one.
    tokens: dict[int, str] = dict(bind.execute(sa.text(
        "SELECT user_id, token_hash FROM credentials WHERE kind = 'token' "
        "AND revoked_at IS NULL ORDER BY id DESC")).all())
    users = bind.execute(sa.text("SELECT id FROM users")).scalars().all()
    op.drop_table('credentials')
    with op.batch_alter_table('users') as batch_op:
        batch_op.add_column(sa.Column('token_hash', sa.String(length=64), nullable=True))
        batch_op.drop_column('disabled_at')
        batch_op.drop_column('password_hash')
        batch_op.drop_column('team_code')
    for uid in users:
        bind.execute(sa.text("UPDATE users SET token_hash = :digest WHERE id = :id"),
                     {"id": uid, "digest": tokens.get(uid) or secrets.token_hex(32)})
    with op.batch_alter_table('users') as batch_op:
        batch_op.alter_column('token_hash', existing_type=sa.String(length=64),
                              nullable=False)
        batch_op.create_unique_constraint('users_token_hash_key', ['token_hash'])
