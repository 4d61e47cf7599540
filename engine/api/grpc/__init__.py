"""The gRPC front end: the decision service over HTTP/2, beside (and sharing an engine with) HTTP.

`start_grpc(engine, host, port)` in `server.py` is the entry point; `codec.py` converts wire
messages to and from the core's dataclasses, `errors.py` maps engine errors to status codes.
"""
