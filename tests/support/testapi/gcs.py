"""A Google Cloud Storage stand-in: the paths and shapes the e2e playbooks use, over one in-memory
object store per app.

- JSON API (what `google-cloud-storage` with STORAGE_EMULATOR_HOST, fake-gcs-server clients and
  `https://storage.googleapis.com/storage/v1/...` through the proxy call): list/get buckets,
  list/get/delete objects, `alt=media` downloads (`/download/storage/v1/...` too), uploads by
  `uploadType=media` and `multipart`. A request that reaches it under GCS' own host (through the
  proxy) must carry a bearer token the test API issued (identity.py), as real GCS would refuse an
  anonymous one; the emulator address accepts anonymous calls, like fake-gcs-server.
- XML API, the S3-compatible one DuckDB's `gs://` paths use with an HMAC key, path-style under
  `/gcs-xml/<bucket>/<object>`: HEAD, ranged GET, PUT, S3 multipart upload, ListObjectsV2; the
  request must be SigV4-signed with the access key id HMAC_KEY_ID.

Buckets are created on first write (a real project has them already)."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import itertools
import json
import time
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

from .identity import IDENTITY

HMAC_KEY_ID = "GOOG1ESTANDINKEY"  # the HMAC access key the XML API accepts (its secret is not checked)
XML_PREFIX = "/gcs-xml"
GCS_HOST = "storage.googleapis.com"


class Blob:
    def __init__(self, data: bytes, content_type: str, generation: int) -> None:
        self.data, self.content_type, self.generation = data, content_type, generation
        self.updated = time.time()
        self.md5 = hashlib.md5(data).digest()


class Store:
    """Buckets and objects, and S3 multipart uploads in progress."""

    def __init__(self) -> None:
        self.buckets: dict[str, float] = {}
        self.objects: dict[tuple[str, str], Blob] = {}
        self.uploads: dict[str, tuple[str, str, dict[int, bytes]]] = {}
        self.serial = itertools.count(1)

    def put(self, bucket: str, name: str, data: bytes, content_type: str) -> Blob:
        self.buckets.setdefault(bucket, time.time())
        blob = Blob(data, content_type or "application/octet-stream", next(self.serial))
        self.objects[(bucket, name)] = blob
        return blob

    def listing(self, bucket: str, prefix: str) -> list[tuple[str, Blob]]:
        return sorted((n, b) for (bk, n), b in self.objects.items() if bk == bucket and n.startswith(prefix))


STORE = web.AppKey("gcs_store", Store)


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def _http_date(ts: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(ts))


def _error(status: int, message: str) -> web.Response:
    """GCS' JSON error shape."""
    return web.json_response({"error": {"code": status, "message": message,
                                        "errors": [{"message": message, "domain": "global"}]}}, status=status)


def _resource(request: web.Request, bucket: str, name: str, blob: Blob) -> dict[str, Any]:
    base = f"{request.scheme}://{request.host}"
    return {"kind": "storage#object", "id": f"{bucket}/{name}/{blob.generation}", "name": name, "bucket": bucket,
            "generation": str(blob.generation), "metageneration": "1", "contentType": blob.content_type,
            "size": str(len(blob.data)), "md5Hash": base64.b64encode(blob.md5).decode(),
            "crc32c": "AAAAAA==", "etag": blob.md5.hex(), "timeCreated": _rfc3339(blob.updated),
            "updated": _rfc3339(blob.updated), "storageClass": "STANDARD",
            "selfLink": f"{base}/storage/v1/b/{bucket}/o/{name}",
            "mediaLink": f"{base}/download/storage/v1/b/{bucket}/o/{name}?generation={blob.generation}&alt=media"}


def _bucket(name: str, created: float) -> dict[str, Any]:
    return {"kind": "storage#bucket", "id": name, "name": name, "location": "US", "storageClass": "STANDARD",
            "timeCreated": _rfc3339(created), "updated": _rfc3339(created), "metageneration": "1"}


def _unauthorized(request: web.Request) -> web.Response | None:
    """Under GCS' own host the bearer must be a token issued here; the emulator address is open."""
    if request.host.split(":")[0] != GCS_HOST:
        return None
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer ") and auth[7:] in request.app[IDENTITY].issued:
        return None
    return _error(401, "Anonymous caller does not have storage access, or the token is not valid.")


async def list_buckets(request: web.Request) -> web.Response:
    if (denied := _unauthorized(request)) is not None:
        return denied
    if not request.query.get("project"):
        return _error(400, "Required parameter: project")
    store = request.app[STORE]
    return web.json_response({"kind": "storage#buckets",
                              "items": [_bucket(n, t) for n, t in sorted(store.buckets.items())]})


async def get_bucket(request: web.Request) -> web.Response:
    if (denied := _unauthorized(request)) is not None:
        return denied
    name = request.match_info["bucket"]
    created = request.app[STORE].buckets.get(name)
    return _error(404, "The specified bucket does not exist.") if created is None \
        else web.json_response(_bucket(name, created))


async def list_objects(request: web.Request) -> web.Response:
    if (denied := _unauthorized(request)) is not None:
        return denied
    bucket = request.match_info["bucket"]
    store = request.app[STORE]
    if bucket not in store.buckets:
        return _error(404, "The specified bucket does not exist.")
    items = [_resource(request, bucket, n, b) for n, b in store.listing(bucket, request.query.get("prefix", ""))]
    return web.json_response({"kind": "storage#objects", "items": items})


def _media(blob: Blob, request: web.Request) -> web.Response:
    headers = {"x-goog-hash": f"md5={base64.b64encode(blob.md5).decode()}",
               "x-goog-generation": str(blob.generation), "x-goog-stored-content-length": str(len(blob.data))}
    return web.Response(body=blob.data, content_type=blob.content_type.split(";")[0], headers=headers)


async def get_object(request: web.Request) -> web.Response:
    if (denied := _unauthorized(request)) is not None:
        return denied
    bucket, name = request.match_info["bucket"], request.match_info["name"]
    blob = request.app[STORE].objects.get((bucket, name))
    if blob is None:
        return _error(404, f"No such object: {bucket}/{name}")
    if request.query.get("alt") == "media" or request.path.startswith("/download/"):
        return _media(blob, request)
    return web.json_response(_resource(request, bucket, name, blob))


async def delete_object(request: web.Request) -> web.Response:
    if (denied := _unauthorized(request)) is not None:
        return denied
    key = (request.match_info["bucket"], request.match_info["name"])
    if request.app[STORE].objects.pop(key, None) is None:
        return _error(404, f"No such object: {key[0]}/{key[1]}")
    return web.Response(status=204)


async def upload(request: web.Request) -> web.Response:
    """`uploadType=media` (the name in the query) or `multipart` (a JSON metadata part, then the media)."""
    if (denied := _unauthorized(request)) is not None:
        return denied
    bucket = request.match_info["bucket"]
    kind = request.query.get("uploadType", "media")
    body = await request.read()
    if kind == "media":
        name, content_type, data = request.query.get("name", ""), request.content_type, body
    elif kind == "multipart":
        try:
            metadata, content_type, data = _multipart(request.headers.get("Content-Type", ""), body)
        except Exception as exc:  # whatever the parser makes of a malformed body is the caller's error
            return _error(400, f"malformed multipart upload: {exc}")
        name = request.query.get("name") or str(metadata.get("name") or "")
        content_type = str(metadata.get("contentType") or content_type)
    else:
        return _error(400, f"uploadType {kind!r} is not supported here (media, multipart)")
    if not name:
        return _error(400, "Required parameter: name")
    blob = request.app[STORE].put(bucket, name, data, content_type)
    return web.json_response(_resource(request, bucket, name, blob))


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, Any], str, bytes]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    parts = list(message.iter_parts()) if message.is_multipart() else []
    if len(parts) != 2:
        raise ValueError("a multipart upload has two parts: the metadata, then the media")
    raw_meta = parts[0].get_payload(decode=True)
    media = parts[1].get_payload(decode=True)
    try:
        metadata = json.loads(raw_meta or b"{}")
    except ValueError:
        raise ValueError("the metadata part of a multipart upload must be JSON") from None
    if not isinstance(metadata, dict):
        raise ValueError("the metadata part of a multipart upload must be a JSON object")
    return metadata, parts[1].get_content_type(), media or b""


# -- XML API (S3-compatible, HMAC) -----------------------------------------------------------------

def _xml(status: int, body: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=('<?xml version="1.0" encoding="UTF-8"?>' + body).encode(),
                        content_type="application/xml", headers=headers)


def _xml_error(status: int, code: str, message: str) -> web.Response:
    return _xml(status, f"<Error><Code>{code}</Code><Message>{escape(message)}</Message></Error>")


def _signed(request: web.Request) -> bool:
    auth = request.headers.get("Authorization", "")
    return auth.startswith("AWS4-HMAC-SHA256 ") and f"Credential={HMAC_KEY_ID}/" in auth


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """`bytes=a-b`, `bytes=a-`, `bytes=-n`; ValueError for anything else."""
    if not header:
        return None
    first, _, last = header.removeprefix("bytes=").partition("-")
    if not header.startswith("bytes=") or not (first or last):
        raise ValueError(header)
    start = int(first) if first else max(0, size - int(last))
    end = min(int(last), size - 1) if first and last else size - 1
    return start, end


async def xml_object(request: web.Request) -> web.Response:
    if not _signed(request):
        return _xml_error(403, "AccessDenied", f"requests must be signed with the HMAC key {HMAC_KEY_ID}")
    store = request.app[STORE]
    bucket, name = request.match_info["bucket"], request.match_info["name"]
    q = request.query
    if request.method == "POST" and "uploads" in q:
        upload_id = f"upload-{next(store.serial)}"
        store.uploads[upload_id] = (bucket, name, {})
        return _xml(200, f"<InitiateMultipartUploadResult><Bucket>{escape(bucket)}</Bucket><Key>{escape(name)}"
                         f"</Key><UploadId>{upload_id}</UploadId></InitiateMultipartUploadResult>")
    if "uploadId" in q:
        started = store.uploads.get(q["uploadId"])
        if started is None:
            return _xml_error(404, "NoSuchUpload", f"no upload {q['uploadId']}")
        if request.method == "PUT":
            if not q.get("partNumber", "").isdigit():
                return _xml_error(400, "InvalidArgument", "partNumber must be a positive integer")
            data = await request.read()
            started[2][int(q["partNumber"])] = data
            return web.Response(status=200, headers={"ETag": f'"{hashlib.md5(data).hexdigest()}"'})
        if request.method == "POST":
            await request.read()
            del store.uploads[q["uploadId"]]
            blob = store.put(bucket, name, b"".join(started[2][n] for n in sorted(started[2])), "")
            return _xml(200, f"<CompleteMultipartUploadResult><Bucket>{escape(bucket)}</Bucket><Key>{escape(name)}"
                             f"</Key><ETag>\"{blob.md5.hex()}\"</ETag></CompleteMultipartUploadResult>")
        if request.method == "DELETE":
            del store.uploads[q["uploadId"]]
            return web.Response(status=204)
    if request.method == "PUT":
        blob = store.put(bucket, name, await request.read(), request.headers.get("Content-Type", ""))
        return web.Response(status=200, headers={"ETag": f'"{blob.md5.hex()}"'})
    blob = store.objects.get((bucket, name))
    if request.method == "DELETE":
        store.objects.pop((bucket, name), None)
        return web.Response(status=204)
    if blob is None:
        return _xml_error(404, "NoSuchKey", f"{bucket}/{name}") if request.method == "GET" \
            else web.Response(status=404)
    headers = {"ETag": f'"{blob.md5.hex()}"', "Last-Modified": _http_date(blob.updated),
               "Accept-Ranges": "bytes", "Content-Type": blob.content_type}
    if request.method == "HEAD":
        return web.Response(status=200, headers={**headers, "Content-Length": str(len(blob.data))})
    try:
        wanted = _byte_range(request.headers.get("Range", ""), len(blob.data))
    except ValueError:
        return _xml_error(416, "InvalidRange", f"Range {request.headers.get('Range')!r} is not bytes=<first>-<last>")
    if wanted is None:
        return web.Response(status=200, body=blob.data, headers=headers)
    start, end = wanted
    return web.Response(status=206, body=blob.data[start:end + 1],
                        headers={**headers, "Content-Range": f"bytes {start}-{end}/{len(blob.data)}"})


async def xml_bucket(request: web.Request) -> web.Response:
    """ListObjectsV2 (what a glob over `gs://bucket/prefix*` asks)."""
    if not _signed(request):
        return _xml_error(403, "AccessDenied", f"requests must be signed with the HMAC key {HMAC_KEY_ID}")
    bucket = request.match_info["bucket"]
    prefix = request.query.get("prefix", "")
    contents = "".join(f"<Contents><Key>{escape(n)}</Key><LastModified>{_rfc3339(b.updated)}</LastModified>"
                       f"<ETag>\"{b.md5.hex()}\"</ETag><Size>{len(b.data)}</Size></Contents>"
                       for n, b in request.app[STORE].listing(bucket, prefix))
    return _xml(200, f"<ListBucketResult><Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>"
                     f"<IsTruncated>false</IsTruncated>{contents}</ListBucketResult>")


def add_routes(app: web.Application) -> None:
    app[STORE] = Store()
    for api in ("/storage/v1", "/download/storage/v1"):
        app.router.add_get(f"{api}/b/{{bucket}}/o/{{name:.+}}", get_object)
    app.router.add_get("/storage/v1/b", list_buckets)
    app.router.add_get("/storage/v1/b/{bucket}", get_bucket)
    app.router.add_get("/storage/v1/b/{bucket}/o", list_objects)
    app.router.add_delete("/storage/v1/b/{bucket}/o/{name:.+}", delete_object)
    app.router.add_post("/upload/storage/v1/b/{bucket}/o", upload)
    app.router.add_get(f"{XML_PREFIX}/{{bucket}}", xml_bucket)
    app.router.add_get(f"{XML_PREFIX}/{{bucket}}/", xml_bucket)
    app.router.add_route("*", f"{XML_PREFIX}/{{bucket}}/{{name:.+}}", xml_object)
