"""Each program's results: statistics made into JSON blocks and log lines."""
