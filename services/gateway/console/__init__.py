"""The console at /ui: tasks, timelines, learning and approvals, rendered on the server.

`reader` is the one place that reads Redis for it (so the task list can later be pointed at
a proper per-workspace index), `views` turns what was read into what the pages show (pure,
SVG charts included), `guard` holds the browser-side access rules (key cookie, CSRF, Origin)
and `live` feeds the pages' Server-Sent Events from the streams.
"""
