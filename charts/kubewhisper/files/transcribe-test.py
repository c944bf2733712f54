# `helm test` for kubewhisper: POST a 1-second 16 kHz WAV (made here, standard library only) to an endpoint's
# /v1/audio/transcriptions and require an OpenAI-shaped JSON answer. Env: TRANSCRIBE_URL, optional API_KEY, TIMEOUT.
import io, json, math, os, struct, sys, urllib.error, urllib.request, uuid, wave

url = os.environ["TRANSCRIBE_URL"]
buf = io.BytesIO()
with wave.open(buf, "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
    w.writeframes(b"".join(struct.pack("<h", int(3000 * math.sin(2 * math.pi * 440 * i / 16000)))
                           for i in range(16000)))
boundary = uuid.uuid4().hex
parts = []
for k, v in (("model", "whisper-1"), ("response_format", "json")):
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="tone.wav"\r\n'
             f'Content-Type: audio/wav\r\n\r\n'.encode() + buf.getvalue() + b"\r\n")
body = b"".join(parts) + f"--{boundary}--\r\n".encode()
req = urllib.request.Request(url, data=body, method="POST",
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
if os.environ.get("API_KEY"):
    req.add_header("Authorization", "Bearer " + os.environ["API_KEY"])
try:
    with urllib.request.urlopen(req, timeout=float(os.environ.get("TIMEOUT", "120"))) as r:
        status, answer = r.status, json.loads(r.read())
except urllib.error.HTTPError as e:
    print(f"FAIL {url}: HTTP {e.code}: {e.read()[:500]!r}", file=sys.stderr); sys.exit(1)
except Exception as e:
    print(f"FAIL {url}: {e!r}", file=sys.stderr); sys.exit(1)
if status != 200 or not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
    print(f"FAIL {url}: unexpected answer {status} {answer!r}", file=sys.stderr); sys.exit(1)
print(f"OK {url}: {json.dumps(answer)}")
