"""Reading uploaded import files: the pure parsing and validation layer (no Django, no database).

`annotation.imports.parsing` is the entry point: `scan` validates a whole file in one streaming
pass, `iter_records` streams the valid records of a file that scanned clean, and
`pairs_from_responses` applies a project's pairing rule. The batch import service builds on these.
"""
