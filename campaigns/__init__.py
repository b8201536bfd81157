"""Campaigns: advance notices of benefit and contribution changes, one calendar month ahead."""
