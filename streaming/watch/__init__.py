"""Monitoring: standing questions ("watches") checked as streams are committed, and their alerts."""
