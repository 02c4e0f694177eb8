"""Developer tools: the Stripe test double, demo data and `manage.py dev`.

Installed by the local and test settings only; production neither lists nor imports it.
"""
