"""Text reports for a small lakeside weather station."""

from station.readings import Reading
from station.report import daily_summary, marine_line

__all__ = ["Reading", "daily_summary", "marine_line"]
