"""The daemon's lifecycle, its construction in one place, and its model events."""
