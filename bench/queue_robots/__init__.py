"""Robots for bench/work_queue.py (discovered with ``robots_package="bench.queue_robots"``)."""
