"""Pure normalisation: upstream notifications -> stream entries (SPEC §3). No I/O here.

``codec`` (JSON parse, canonical text, raw bytes), ``entries`` (the stream entry, the dead
letter), ``docplanner`` and ``myinvois`` (each format's checks, ids and entry), ``batch`` (a
DocPlanner pull body or pushed items -> entries), ``salvage`` (item-by-item reading).
"""
