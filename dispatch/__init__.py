"""Dispatch: the registry, alarms and their life, routing, durable timers, the API and dashboard."""
