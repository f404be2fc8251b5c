"""Reports: virtual visits, call quality and texts (issue 14; ``docs/reports.md``).

- :mod:`lib.reports.inputs`: what the reports are fed (participant events, media stream quality, the
  ``report-updates`` queue messages).
- :mod:`lib.reports.visits`, :mod:`lib.reports.quality`, :mod:`lib.reports.texts`: one row per visit / text,
  derived by pure functions from those inputs.
- :mod:`lib.reports.recorder`: keeps the report documents up to date (queue-triggered).
- :mod:`lib.reports.reader`, :mod:`lib.reports.summary`, :mod:`lib.reports.csv_export`: the read side (range
  reads of day sheets, aggregates, CSV).
"""
