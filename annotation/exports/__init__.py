"""Writing exports: the pure layer (no Django, no database), the mirror of `annotation.imports`.

`aggregation` turns a pair's votes into one preference (winner, agreement, margin); `formats`
serialises rows as JSONL, CSV or Parquet in bounded chunks. `annotation.selectors.exports` reads
the database in a consistent snapshot and feeds them.
"""
