"""The REST API of the trial store: ``/api/v1/`` (django-ninja), OpenAPI 3 at
``/api/v1/openapi.json``.

* :mod:`.auth` — ``Authorization: Bearer TOKEN`` (tokens made by ``hepatrial user token NAME``,
  :mod:`hepatrial.trials.services.tokens`);
* :mod:`.problems` — every error as ``application/problem+json`` (RFC 9457) naming each field
  and reason;
* :mod:`.schemas` — request and response bodies;
* :mod:`.main` — the endpoints. Reads go through :mod:`hepatrial.trials.selectors` scoped to the
  caller's sites (an object of another site is a 404, as if it did not exist); writes go
  through :mod:`hepatrial.trials.services`, so the API applies the same validators, locks,
  signatures and permissions as every other path;
* :mod:`.urls` — mounted at ``/api/v1/`` by :mod:`hepatrial.trials.urls`.
"""
