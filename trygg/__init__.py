"""Trygg: gateway, dispatch and simulator composed into one service, and shared plumbing."""
