"""Prometheus metrics of the gateway. Labels are kinds and reasons, never device ids."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("trygg_device_events_total", "Device events stored, by kind", ["kind"])
DUPLICATES = Counter("trygg_device_event_duplicates_total",
                     "Resent device messages answered again but stored once")
REJECTIONS = Counter("trygg_frame_rejections_total", "Device frames rejected, by reason",
                     ["reason"])
STORE_FAILURES = Counter("trygg_event_store_failures_total",
                         "Batches that could not be committed (nothing was answered)")
INGEST_LATENCY = Histogram(
    "trygg_ingest_latency_seconds",
    "From a stored device message (not a heartbeat) arriving to its answer going out, "
    "after the commit",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
BATCH_SIZE = Histogram("trygg_ingest_batch_size", "Events committed per transaction",
                       buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500))
MQTT_CONNECTED = Gauge("trygg_mqtt_connected", "1 while the gateway's broker link is up",
                       ["link"])
MQTT_RECONNECTS = Counter("trygg_mqtt_connection_losses_total",
                          "Broker connection attempts that failed or dropped", ["link"])
HEARTBEATS = Counter("trygg_heartbeats_total",
                     "Heartbeats answered (they update last-seen in memory, no inbox row)")
LAST_SEEN_ROWS = Counter("trygg_last_seen_rows_written_total",
                         "device_links rows written by the batched last-seen writer")
LAST_SEEN_PENDING = Gauge("trygg_last_seen_pending_units",
                          "Units heard since last-seen was last written")
ANSWERS_NOT_SENT = Counter("trygg_answers_not_sent_total",
                           "Answers that could not be handed to the broker (the device resends)")
