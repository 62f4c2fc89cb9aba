"""Gateway: device I/O. Frames in, events committed, answers out. Never decides who responds."""
