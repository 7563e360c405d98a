"""Webhook deliveries to partner systems: endpoints (store), signatures, a bounded queue with
retries, and the dispatcher that turns session and analytics events into deliveries."""
