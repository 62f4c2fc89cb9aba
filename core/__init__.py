"""The spine both roles share: errors, database plumbing, clock, settings, logs, the inbox.

Owned by neither the gateway nor dispatch; it imports neither of them, nor the package
that composes the service (`trygg`).
"""
