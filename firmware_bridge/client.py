"""Small synchronous protocol client for the firmware (tests, benchmark): over a socket (QEMU UART)
or a subprocess's pipes (host build). The asynchronous runtime link lives in ecgedge.edge_runtime."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import time

import numpy as np

from ecgedge.errors import DeviceTimeout, ProtocolError
from ecgedge.firmware_bridge import protocol as P

CHUNK = 1000


class FirmwareClient:
    def __init__(self, sock: socket.socket | None = None, proc: subprocess.Popen | None = None):
        if (sock is None) == (proc is None):
            raise ValueError("give exactly one of sock or proc")
        self.sock, self.proc = sock, proc
        self.dec = P.FrameDecoder()
        self.seq = 0
        self.pending: list[P.Frame] = []

    # -- bytes ---------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.sock is not None:
            self.sock.sendall(data)
        else:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def _read(self, timeout: float) -> bytes:
        if self.sock is not None:
            self.sock.settimeout(timeout)
            try:
                return self.sock.recv(65536)
            except socket.timeout:
                return b""
        fd = self.proc.stdout.fileno()
        r, _, _ = select.select([fd], [], [], timeout)
        return os.read(fd, 65536) if r else b""

    # -- frames --------------------------------------------------------------------------------
    def send(self, msg_type: int, payload: bytes = b"") -> int:
        seq = self.seq
        self.write(P.encode_frame(msg_type, seq, payload))
        self.seq = (self.seq + 1) & 0xFFFF
        return seq

    def recv(self, timeout: float = 10.0) -> P.Frame:
        deadline = time.monotonic() + timeout
        while not self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeviceTimeout(f"no frame from the firmware within {timeout} s")
            data = self._read(min(left, 0.5))
            if data:
                self.pending.extend(self.dec.feed(data))
        return self.pending.pop(0)

    def request(self, msg_type: int, payload: bytes = b"", expect: int | None = None, timeout: float = 10.0):
        self.send(msg_type, payload)
        f = self.recv(timeout)
        if expect is not None and f.type != expect:
            detail = ""
            if f.type == P.MsgType.ERROR:
                e = P.unpack_error(f.payload)
                detail = f": ERROR {e.code} {e.msg!r}"
            raise ProtocolError(f"expected {P.MsgType(expect).name}, got type {f.type:#x}{detail}")
        return f

    # -- messages ------------------------------------------------------------------------------
    def hello(self) -> P.Info:
        return P.unpack_info(self.request(P.MsgType.HELLO, b"", P.MsgType.INFO).payload)

    def load_input(self, q: np.ndarray, timeout: float = 10.0) -> None:
        data = np.asarray(q, np.int8).reshape(-1).tobytes()
        for off in range(0, len(data), CHUNK):
            f = self.request(P.MsgType.LOAD_INPUT, P.pack_load_input(P.LoadInput(off, data[off:off + CHUNK])),
                             P.MsgType.ACK, timeout)
            if P.unpack_ack(f.payload).status != 0:
                raise ProtocolError(f"LOAD_INPUT at {off} refused")

    def infer(self, q: np.ndarray, count: int = 1, warmup: int = 0, timeout: float = 60.0) -> P.Result:
        self.load_input(q)
        f = self.request(P.MsgType.INFER, P.pack_infer(P.Infer(count, warmup)), P.MsgType.RESULT, timeout)
        return P.unpack_result(f.payload)

    def send_samples(self, first_index: int, counts: np.ndarray, block: int = 500) -> None:
        counts = np.asarray(counts, np.int16)
        for k in range(0, counts.size, block):
            s = P.Samples(first_index + k, 0, counts[k:k + block])
            self.request(P.MsgType.SAMPLES, P.pack_samples(s), P.MsgType.ACK)

    def window_infer(self, first_index: int, timeout: float = 60.0) -> P.Result:
        f = self.request(P.MsgType.WINDOW_INFER, P.pack_window_infer(P.WindowInfer(first_index)),
                         P.MsgType.RESULT, timeout)
        return P.unpack_result(f.payload)

    def status(self) -> P.Status:
        return P.unpack_status(self.request(P.MsgType.GET_STATUS, b"", P.MsgType.STATUS).payload)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        elif self.proc is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
