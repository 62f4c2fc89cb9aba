"""Trygg: composition of gateway, dispatch and simulator into one service, plus shared infrastructure."""
