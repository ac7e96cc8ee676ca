"""Coding quality (issue 20): double coding, inter-coder reliability, adjudication.

Pure functions, no database: `fields` (what coders code, and how each is measured),
`agreement` (which episodes agree, disagree or were adjudicated; the coding floor),
`reliability` (Krippendorff's alpha per field with bootstrap intervals, per coder pair, and
the tables behind it), `sampling` (a stratified sample for a second coder). The store keeps
the codings (forecasting.store.codings); forecasting.services.coding serves both faces.
"""
