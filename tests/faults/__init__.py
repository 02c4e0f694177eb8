"""The fault suite (issue 20): faults injected into the production layout with two hosts."""
