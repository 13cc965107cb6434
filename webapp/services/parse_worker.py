"""The import's parse worker: `python -m webapp.services.parse_worker`.

Reads length-prefixed pickled (data, first_line, options) requests on stdin and answers
each with a pickled ParsedChunk on stdout, in order. It imports only the JSON Lines
module, so it starts in a fraction of a second and stays small.
"""

from __future__ import annotations

import pickle
import struct
import sys
from typing import BinaryIO

from webapp.services.jsonl import parse_chunk

HEADER = struct.Struct(">Q")


def write_frame(stream: BinaryIO, payload: bytes) -> None:
    """One length-prefixed frame."""
    stream.write(HEADER.pack(len(payload)))
    stream.write(payload)


def serve(requests: BinaryIO, responses: BinaryIO) -> None:
    """Answer requests until the other side closes the stream."""
    while True:
        header = requests.read(HEADER.size)
        if len(header) < HEADER.size:
            return
        (size,) = HEADER.unpack(header)
        data, first_line, options = pickle.loads(requests.read(size))
        parsed = parse_chunk(data, first_line, options)
        write_frame(responses, pickle.dumps(parsed, protocol=pickle.HIGHEST_PROTOCOL))
        responses.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
