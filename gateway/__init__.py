"""The messaging gateway: webhooks, streams, contacts, router and dispatcher."""
