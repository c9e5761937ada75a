"""Lab tools that live in the checkout and never ship: `make bench` (bench/) and `make chaos` (chaos.py)."""
