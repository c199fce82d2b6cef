"""Pure statistics: numpy arrays in, small result objects out. No I/O, no DIALS."""
