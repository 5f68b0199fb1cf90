"""Trips made of legs, each measured in its own unit."""

from trip.legs import leg_in_metres, total_distance
from trip.summary import describe

__all__ = ["describe", "leg_in_metres", "total_distance"]
