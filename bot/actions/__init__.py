"""Custom actions of the bot (Rasa SDK action server); state and answers import without Rasa."""
