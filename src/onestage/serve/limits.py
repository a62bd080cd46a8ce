"""The limits `onestage serve` puts on requests and their defaults: the one source for the
command's options and `create_app`'s parameters. Importing it loads nothing else (the command
line reads it at start)."""

from __future__ import annotations

# Largest request body accepted (--max-upload-mb).
DEFAULT_MAX_UPLOAD_MB = 20.0

# Largest image accepted, width x height (--max-pixels): 4096 x 4096, a 48 MiB RGB array once
# decoded (the library's own limit, 64M pixels, is 183 MiB). Larger than a 12-Mpx phone photo
# (4032 x 3024); the detector sees 320 px, so a larger image adds nothing it can use.
DEFAULT_MAX_PIXELS = 4096 * 4096

# Prediction requests in flight at once (--max-queue): being read, decoded, waiting for or in
# inference. Two batches of the batching runner: one computing while the next fills. Memory
# grows with it: each request may hold a body of --max-upload-mb and an image of --max-pixels.
DEFAULT_MAX_QUEUE = 16

# Seconds a request's body may take to arrive whole (--read-timeout): 20 MB at 4 Mbit/s, 40 s.
# A slow client otherwise holds a place in the queue as long as it likes.
DEFAULT_READ_TIMEOUT_S = 60.0

# Seconds a client refused for a full queue is told to wait (the Retry-After header).
RETRY_AFTER_SECONDS = 1
