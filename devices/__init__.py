"""Device codecs: bytes from alarm equipment in, one event vocabulary out. No I/O, no clock."""
