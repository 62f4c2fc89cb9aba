"""Prometheus metrics of the DC-09 transports: serial lines and the TCP listener.

Labels are configured line names and reasons, never device paths, peer addresses or
account numbers.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SERIAL_LINE_UP = Gauge("trygg_serial_line_up", "1 while the serial line is open", ["line"])
SERIAL_RECONNECTS = Counter(
    "trygg_serial_line_losses_total",
    "Serial line openings that failed or dropped (each is followed by a reopen)", ["line"])
TCP_CONNECTIONS = Gauge("trygg_dc09_tcp_connections", "Open DC-09 TCP connections")
TCP_CLOSED = Counter("trygg_dc09_tcp_connections_closed_total",
                     "DC-09 TCP connections closed, by reason", ["reason"])
FRAMING_DISCARDS = Counter(
    "trygg_dc09_framing_discards_total",
    "Bytes dropped between DC-09 frames (garbage) or for lack of a terminator (overflow)",
    ["transport", "reason"])
HANDLER_FAILURES = Counter(
    "trygg_dc09_frame_handler_failures_total",
    "Frames whose handler raised (a bug; the line stays up and the sender resends)",
    ["transport"])
