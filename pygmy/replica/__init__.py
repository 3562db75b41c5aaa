"""Running a backend tier as one replica of a Raft group: the group, its HTTP routes, its state machine base."""
