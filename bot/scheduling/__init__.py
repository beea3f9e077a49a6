"""Scheduling: the clock's ticks, occurrences of schedules, reminders and quiet hours."""
