"""The coordinator's eCRF: Django views and templates (htmx for live parts), not the admin.

Every view checks on the server who may see and do what (:mod:`.access`: role, site; the
services check locks, signatures and the rules); the templates only show what the view
allows. Pages: sign-in / sign-out (django-axes locks an account after 5 failed sign-ins), the
worklist (:mod:`.worklist`, sections other pages extend), the site dashboard
(:mod:`.dashboard`), the participant list and casebook with the history of any field
(:mod:`.casebook`), screening and enrolment (:mod:`.screening`), the visit CRF (:mod:`.crf`);
the query, SDV and signing pages live in their own modules, added by :mod:`.urls`.
Reads go through :mod:`hepatrial.trials.selectors_web`, writes through the services.
"""
