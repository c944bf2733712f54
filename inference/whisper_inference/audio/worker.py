"""Decoding in worker processes: off the event loop, a bounded number at once, killed at a deadline.

Each upload is decoded in its own process forked from a forkserver that has the decoders imported (a fork is
milliseconds; nothing of vLLM's threads or memory is inherited). A process is the unit that can be stopped for
certain: FFmpeg and libsndfile calls cannot be interrupted from a thread. The samples come back through a pipe.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext

import numpy as np

from .limits import (
    AudioDecodeError,
    AudioLimits,
    AudioTooLongError,
    AudioTooShortError,
    DecodeTimeoutError,
    EmptyAudioError,
)

_ERRORS: dict[str, type[AudioDecodeError]] = {
    cls.__name__: cls for cls in (AudioDecodeError, EmptyAudioError, AudioTooShortError, AudioTooLongError)
}


def _child(conn: Connection, limits: AudioLimits, rate: int) -> None:
    from .decode import decode_audio

    try:
        data = conn.recv_bytes()
        try:
            samples = decode_audio(data, limits, rate)
        except AudioDecodeError as exc:
            conn.send(("error", type(exc).__name__, str(exc)))
            return
        conn.send(("ok", len(samples)))
        conn.send_bytes(memoryview(samples.data))
    finally:
        conn.close()


class _Decode:
    """One upload's worker process; `run` blocks (call it in a thread), `kill` may come from any thread."""

    def __init__(self, ctx: ForkServerContext, limits: AudioLimits, rate: int, timeout: float):
        self.ctx, self.limits, self.rate, self.timeout = ctx, limits, rate, timeout
        self.process: multiprocessing.process.BaseProcess | None = None
        self.killed = threading.Event()

    def kill(self) -> None:
        self.killed.set()
        if self.process is not None and self.process.is_alive():
            self.process.kill()

    def run(self, data: bytes) -> np.ndarray:
        deadline = time.monotonic() + self.timeout
        parent, child = self.ctx.Pipe()
        self.process = self.ctx.Process(target=_child, args=(child, self.limits, self.rate), daemon=True)
        try:
            self.process.start()
            child.close()
            if self.killed.is_set():
                raise DecodeTimeoutError("decoding was cancelled")
            # the child reads the upload at once; a full pipe only waits for that read
            parent.send_bytes(data)
            reply = self._recv(parent, deadline)
            if reply[0] == "error":
                raise _ERRORS.get(reply[1], AudioDecodeError)(reply[2])
            samples = np.empty(int(reply[1]), np.float32)
            if len(samples):
                self._wait(parent, deadline)
                parent.recv_bytes_into(memoryview(samples.data).cast("B"))
            return samples
        except (EOFError, OSError):
            if self.killed.is_set():
                raise DecodeTimeoutError("decoding was cancelled") from None
            raise AudioDecodeError("the decoder failed on this upload (it crashed)") from None
        finally:
            parent.close()
            self.process.kill()
            self.process.join(5)

    def _wait(self, conn: Connection, deadline: float) -> None:
        if not conn.poll(max(0.0, deadline - time.monotonic())):
            self.kill()
            raise DecodeTimeoutError(
                f"decoding the upload took longer than {self.timeout:g} s (DECODE_TIMEOUT_SECONDS)"
            )

    def _recv(self, conn: Connection, deadline: float) -> tuple[str, ...]:
        self._wait(conn, deadline)
        reply: tuple[str, ...] = conn.recv()
        return reply


class DecodePool:
    """At most `workers` uploads decode at once; the others wait their turn (bounded by admission control)."""

    def __init__(self, limits: AudioLimits, rate: int, workers: int, timeout: float):
        self.limits, self.rate, self.timeout = limits, rate, timeout
        self._slots = asyncio.Semaphore(workers)
        self._ctx: ForkServerContext = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(["whisper_inference.audio.decode"])

    async def decode(self, data: bytes, timeout: float | None = None) -> np.ndarray:
        """16 kHz mono samples of an upload; `timeout` overrides DECODE_TIMEOUT_SECONDS (the warm-up's)."""
        async with self._slots:
            job = _Decode(self._ctx, self.limits, self.rate, timeout or self.timeout)
            try:
                return await asyncio.to_thread(job.run, data)
            except asyncio.CancelledError:
                job.kill()  # the client left: stop decoding for it
                raise
