"""The agents: users and sessions, the desk (queue, assignment, conversations), the console."""
