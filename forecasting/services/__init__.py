"""The service layer: every capability with two faces (the `forecast` command and the API)
is one function here; the faces only translate arguments, answers and errors.

- `episodes`: import (validate, write all or nothing, queue a refit) and filtered listing
- `priors`: the active prior set, submitting a new one (audited, queues a refit)
- `models`: version summaries, promotion (always audited)
- `fits`: fit the stored episodes, register the version, promote on pass
- `setup`: opening and migrating the database, first-run seed data
- `errors`: the one table from exceptions to HTTP statuses and exit codes
"""
