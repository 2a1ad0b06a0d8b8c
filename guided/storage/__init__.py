"""What guided writes and reads: folder layouts and file names (`folders`), atomic writes and safe reads (`io`),
one writer per folder (`locks`), code revisions and devices (`provenance`), networks taken away (`loading`,
`export`).
"""
