"""Robots for bench/queue.py (discovered with ``robots_package="bench.queue_robots"``)."""
