# `helm test` for kubewhisper: POST a 1-second 16 kHz WAV (made here, standard library only) to an endpoint's
# /v1/audio/transcriptions and require an OpenAI-shaped JSON answer. Env: TRANSCRIBE_URL, optional API_KEY, TIMEOUT.
import io
import json
import math
import os
import struct
import sys
import urllib.error
import urllib.request
import uuid
import wave


def tone_wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(
            b"".join(struct.pack("<h", int(3000 * math.sin(2 * math.pi * 440 * i / 16000))) for i in range(16000))
        )
    return buf.getvalue()


def multipart(boundary: str) -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in (("model", "whisper-1"), ("response_format", "json"))
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="tone.wav"\r\n'
        f"Content-Type: audio/wav\r\n\r\n".encode()
        + tone_wav()
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def main() -> int:
    url = os.environ["TRANSCRIBE_URL"]
    boundary = uuid.uuid4().hex
    req = urllib.request.Request(
        url,
        data=multipart(boundary),
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    if os.environ.get("API_KEY"):
        req.add_header("Authorization", "Bearer " + os.environ["API_KEY"])
    try:
        with urllib.request.urlopen(req, timeout=float(os.environ.get("TIMEOUT", "120"))) as r:
            status, answer = r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        print(f"FAIL {url}: HTTP {e.code}: {e.read()[:500]!r}", file=sys.stderr)
        return 1
    except Exception as e:
        print(f"FAIL {url}: {e!r}", file=sys.stderr)
        return 1
    if status != 200 or not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
        print(f"FAIL {url}: unexpected answer {status} {answer!r}", file=sys.stderr)
        return 1
    print(f"OK {url}: {json.dumps(answer)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
