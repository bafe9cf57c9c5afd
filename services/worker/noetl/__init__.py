"""Names NoETL's worker offers to the code of a `python` step, for playbooks that import them
(`from noetl.worker.secrets import fetch_credential_by_key`). Only those names: this is not NoETL."""
