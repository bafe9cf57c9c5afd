"""The script k8s_job_python_gcs runs as a Kubernetes Job, which NoETL's cluster keeps at
gs://noetl-demo-19700101/scripts/data_processor.py (not in the e2e snapshot): the cloud index seeds
it into the GCS stand-in (`setup_objects`). It reads its arguments (argv[1], JSON), checks the
service account the Job's env carries with google-auth (what the Job pip-installs), and prints a
JSON summary to its log, which the step's result carries as `output`."""

import json
import os
import sys

args = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
summary = {"input_file": args.get("input_file"), "output_bucket": args.get("output_bucket"),
           "mode": args.get("mode"), "project": os.environ.get("GCP_PROJECT"),
           "bucket_env": os.environ.get("GCS_BUCKET")}
raw = os.environ.get("GCP_SERVICE_ACCOUNT_JSON") or ""
try:
    from google.oauth2 import service_account

    info = json.loads(raw)
    if isinstance(info, str):  # the env holds the key as a JSON string when it was passed through tojson twice
        info = json.loads(info)
    summary["service_account"] = service_account.Credentials.from_service_account_info(info).service_account_email
except Exception as exc:  # the summary says why instead of failing the Job
    summary["service_account_error"] = f"{type(exc).__name__}: {exc}"[:200]
summary["records_processed"] = len(str(args.get("input_file") or ""))
summary["wrote_to_gcs"] = False  # the pod has no route to the GCS stand-in
print(json.dumps({"status": "processed", **summary}))
