"""``desktop-app bench``: how fast the studio is, beside plain diffusers and the hardware's own limit.

One small module per section of the report (issue 8): ``overhead``, ``previews``, ``responsiveness``,
``startup``, ``throughput``, ``memory``, ``training``, ``gpu``; ``report`` runs them and prints the table or
the JSON. Every figure is a median with its spread (min, max) over several runs, measured in one process
where two things are compared, alternately (ABAB...), so that drift in the machine's load hits both alike.

Nothing here imports torch or Qt at module level: ``desktop-app --help`` stays fast.
"""
