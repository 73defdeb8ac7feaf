"""Hostile kiosk payloads that once escaped the parser as something other than MessageRejected.

Each is small (the first is 418 bytes) and well-formed enough to get past the size and UTF-8
checks, so it reaches the JSON decoder and the privacy scan.
"""

#: name -> payload; every one must be refused as MessageRejected, never crash a reader.
POISON = {
    "int too large for a float": b'{"schema":1,"x":1' + b"0" * 400 + b"}",
    "schema too large for a float": b'{"schema":1' + b"0" * 400 + b"}",
    "arrays nested past the recursion limit": b'{"schema":1,"x":' + b"[" * 1500 + b"}",
    "objects nested near the recursion limit": (b'{"schema":1,"x":' + b'{"a":' * 990
                                                + b"1" + b"}" * 991),
}
