"""Robots for bench/scale.py (discovered with ``robots_package="bench.scale_robots"``)."""
