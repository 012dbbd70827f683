"""The course's instructor pipeline around nbgrader: release, autograde, feedback, export."""
