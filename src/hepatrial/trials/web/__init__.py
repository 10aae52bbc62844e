"""The coordinator's eCRF: Django views and templates (htmx for live parts), not the admin.

Every view checks on the server who may see and do what (role, site, lock, signature); the
templates only show what the view allows. Pages: sign-in / sign-out (django-axes locks an
account after 5 failed sign-ins), the worklist.
"""
