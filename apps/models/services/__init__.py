"""Writes to models, one module a concern: ``registry`` (making, changing, deleting a
model), ``versions`` (a new version's upload, its completion, its failure) and
``aliases`` (naming a version). Import from the module itself."""
