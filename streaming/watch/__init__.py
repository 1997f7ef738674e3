"""Monitoring: standing questions ("watches") checked against every segment and shown item as a
stream commits it, the alerts they raise, where those are kept, and how webhooks deliver them."""
