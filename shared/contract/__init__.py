"""The contract every service and publisher shares: events, the envelope, models, keys, topology.

What belongs here: the shapes on the wire and the names in Redis, nothing that does I/O.
It imports nothing else from `shared` (only pydantic and the standard library), so any
process, ours or a worker in another language reading docs/asyncapi.json, agrees on it.
"""
